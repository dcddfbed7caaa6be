"""Shared fixtures: a tiny CIFAR-10-layout archive and the paths of the project itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tiny_cifar import write_tiny_cifar


@pytest.fixture(scope="session")
def tiny_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(path, sha256) of a tiny archive: 40 training and 10 test images per class."""
    path = tmp_path_factory.mktemp("archive") / "cifar-10-python.tar.gz"
    return path, write_tiny_cifar(path)


@pytest.fixture(scope="session", autouse=True)
def session_tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Module and session fixtures (which run stages before any test's own store exists) log to
    a store of the session's, never to the developer's mlflow.db."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('session-mlflow') / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("DVC_EXP_NAME", raising=False)
        patch.delenv("DVC_ROOT", raising=False)
        yield uri


@pytest.fixture(autouse=True)
def isolated_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test logs to its own SQLite store, never to the developer's."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return uri


# The longest test files (minutes each, measured here), started first: `make test` hands whole
# files to two workers, and a long file started last leaves one worker idle at the end.
LONGEST_FIRST = (
    "test_dvc_repro.py",
    "test_readme.py",
    "test_outage.py",
    "test_team_server.py",
    "test_machines.py",
    "test_mlflow_models.py",
    "test_faults.py",
    "test_bench_run.py",
    "test_mirrored.py",
    "test_environment.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
