"""Shared fixtures: a tiny CIFAR-10-layout archive and the paths of the project itself."""

from __future__ import annotations

import gc
import json
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


# Tiers are folders; a test's markers follow from its folder (and may add `servers`):
# unit — no training, no server, no stage process (`make test-fast`); e2e — real stages, DVC,
# servers; realdata — the full CIFAR-10 mirror; release — the committed results match the code.
TIER_MARKERS = {
    "unit": (),
    "e2e": ("slow",),
    "realdata": ("slow", "realdata"),
    "release": ("release",),
}
# Seconds each test file took in the last recorded run (`make durations`): `make test` hands
# whole files to three workers, and a long file started last leaves one worker idle at the end.
DURATIONS = Path(__file__).parent / "durations.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        action="store_true",
        help=f"write each test file's total time to {DURATIONS.name} (for the slowest-first order)",
    )


def _tier(item: pytest.Item) -> str:
    return item.path.relative_to(Path(__file__).parent).parts[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = _tier(item)
        if tier not in TIER_MARKERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in {', '.join(TIER_MARKERS)}")
        for marker in TIER_MARKERS[tier]:
            item.add_marker(marker)
        if tier == "unit" and item.get_closest_marker("servers"):
            raise pytest.UsageError(f"{item.nodeid} starts servers: move it out of tests/unit")
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}

    def rank(item: pytest.Item) -> tuple[bool, float]:
        # Files not yet recorded go first among their tier's peers: new tests are often long.
        recorded = seconds.get(item.path.name)
        return (_tier(item) == "unit", -(recorded if recorded is not None else 1e9))

    items.sort(key=rank)  # stable: each file keeps its own order


def pytest_collection_finish(session: pytest.Session) -> None:
    # As pipeline.cli does for each stage: the modules imported so far (TensorFlow, MLflow)
    # live until the end, so the garbage collector need not walk them again.
    gc.freeze()


_spent: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = Path(report.location[0]).name
    _spent[name] = _spent.get(name, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    if session.config.getoption("--record-durations") and not hasattr(
        session.config, "workerinput"
    ):
        ordered = dict(sorted(_spent.items(), key=lambda kv: -kv[1]))
        DURATIONS.write_text(
            json.dumps({k: round(v, 1) for k, v in ordered.items()}, indent=1) + "\n"
        )
