"""Fixtures shared by the end-to-end tests: a real MLflow tracking server and the tiny pipeline
run against it once (it is the most expensive thing here, and several modules read it)."""

from __future__ import annotations

import os

import pytest
from project import clean_env, commit, make_repo, mlflow_server, run, set_params, write_params

from pipeline import preprocess


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1: SQLite backend, artifacts proxied to a folder."""
    root = tmp_path_factory.mktemp("server")
    with mlflow_server(root) as uri:
        yield uri, root


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


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_archive):
    """Processed tiny data (`processed/`) and its params (`params.yaml`, 50 validation images),
    for tests that run the train stage as a process."""
    root = tmp_path_factory.mktemp("workspace")
    write_params(root / "params.yaml", data__val_size=50)
    preprocess.main(
        [
            *("--params", str(root / "params.yaml"), "--archive", str(tiny_archive[0])),
            *("--output", str(root / "processed")),
        ]
    )
    return root
