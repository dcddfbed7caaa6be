"""Fixtures shared by the end-to-end tests: a real MLflow tracking server, the tiny pipeline run
once (it is the most expensive thing here, and several modules read it) and its processed data."""

from __future__ import annotations

from pathlib import Path

import filelock
import pytest
from project import clean_env, commit, make_repo, mlflow_server, run, write_params
from tiny_cifar import write_tiny_cifar

from pipeline import preprocess


@pytest.fixture(scope="session")
def tracking_server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1: SQLite backend, artifacts proxied to a folder."""
    root = tmp_path_factory.mktemp("server")
    with mlflow_server(root) as uri:
        yield uri, root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id) -> tuple[Path, str]:
    """The tiny project run once with `dvc repro`, committed and tagged `baseline`: (its
    folder, what `dvc repro` printed). Made once per session by the first worker that asks (the
    others wait for it) and never changed afterwards: tests take a copy (project.copy_repo)."""
    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the session's, not a worker's
    root, log = shared / "tiny-run", shared / "tiny-run.log"
    with filelock.FileLock(f"{root}.lock"):
        if not log.exists():
            env = clean_env()  # the stages' default store: mlflow.db in the repository
            archive = shared / "tiny-run-archive" / "cifar-10-python.tar.gz"
            archive.parent.mkdir()
            root.mkdir()
            make_repo(root, archive, write_tiny_cifar(archive), env)
            output = run(["dvc", "repro"], root, env)
            commit(root, env, "the first run")
            run(["git", "tag", "baseline"], root, env)
            log.write_text(output)
    return root, log.read_text()


@pytest.fixture(scope="session")
def tiny_run_archive(tiny_run) -> tuple[Path, str]:
    """(path, sha256) of the archive the session's tiny run read: a new project made from it
    reproduces that run's files exactly."""
    import hashlib

    path = tiny_run[0].parent / "tiny-run-archive" / "cifar-10-python.tar.gz"
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


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
