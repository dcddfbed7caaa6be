"""A lost node's task clones are removed by the node's next task; a running task's are not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.cluster import sweep_clones

HOLD = (
    "import filelock, sys, time; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
    "print('held', flush=True); time.sleep(120)"
)


def holder(clone: Path) -> subprocess.Popen:
    """A task's process: holds its clone's lock until it ends."""
    clone.mkdir()
    (clone / "dvc.yaml").write_text("stages: {}\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(clone.with_suffix(".lock"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_only_clones_whose_task_is_gone_are_swept(tmp_path):
    running = holder(tmp_path / "task-running")
    lost = holder(tmp_path / "task-lost")
    lost.kill()  # as a lost node's process: its `finally` never runs
    lost.wait()
    try:
        swept = sweep_clones(tmp_path)
        assert swept == [tmp_path / "task-lost"]
        assert not (tmp_path / "task-lost").exists()
        assert (tmp_path / "task-running" / "dvc.yaml").exists()
    finally:
        running.kill()
        running.wait()
    assert sweep_clones(tmp_path) == [tmp_path / "task-running"]
    assert list(tmp_path.iterdir()) == []
