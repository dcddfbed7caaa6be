"""Fixtures shared by the end-to-end tests: a real MLflow tracking server and the tiny pipeline
run against it once (it is the most expensive thing here, and several modules read it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from project import clean_env, commit, free_port, make_repo, run, set_params


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1: SQLite backend, artifacts proxied to a folder."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env())
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(
                    f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
    yield uri, root
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def served_repo(tmp_path_factory, tiny_archive, tracking_server):
    """The tiny pipeline run with `dvc repro`, logging to the tracking server.

    `data.url` is a path relative to the repository, as runs here give it, so that no param or
    tag the server receives names a folder of this machine.
    """
    uri, _ = tracking_server
    env = clean_env(MLFLOW_TRACKING_URI=uri)
    root = make_repo(tmp_path_factory.mktemp("served"), *tiny_archive, env)
    set_params(root, data__url=os.path.relpath(tiny_archive[0], root))
    commit(root, env, "data.url relative to the repository")
    run(["dvc", "repro"], root, env)
    return root, env
