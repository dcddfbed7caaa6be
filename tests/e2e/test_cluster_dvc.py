"""What `pipeline.cluster` takes from DVC beyond its command line, pinned to the DVC version the
lock installs: when the lock moves DVC, this fails first, and these two uses are checked again.

- `drop_lock_entries` edits dvc.lock with DVC's lock-file API (`dvc.dvcfile.Lockfile.remove_stage`,
  `repo.stage.collect`, `repo.index.stages`, `out.use_cache`, `out.exists`);
- `restore` reads the stages `dvc repro` ran from its output (`RUNNING_STAGE`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dvc
import yaml

from pipeline import cluster

PINNED = "3.67.1"  # requirements.lock's dvc


def stage(name: str, cache: bool = True) -> dict:
    out = f"{name}.txt"
    return {
        "cmd": f"{sys.executable} -c \"open('{out}', 'w').write('{name}')\"",
        "outs": [out if cache else {out: {"cache": False}}],
    }


def dvc_cli(root: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_dvc_internals_cluster_uses(tmp_path, monkeypatch):
    assert dvc.__version__ == PINNED, (
        f"DVC {dvc.__version__} is installed, these checks were written for {PINNED}: "
        "check drop_lock_entries() and RUNNING_STAGE against the new version, then update PINNED"
    )
    dvc_cli(tmp_path, "init", "--no-scm", "-q")
    stages = {"a": stage("a"), "b": stage("b"), "stamp": stage("stamp", cache=False)}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    ran = cluster.RUNNING_STAGE.findall(dvc_cli(tmp_path, "repro"))
    assert sorted(ran) == ["a", "b", "stamp"]

    def locked() -> set[str]:
        lock = tmp_path / "dvc.lock"  # DVC deletes it with its last stage
        return set(yaml.safe_load(lock.read_text())["stages"]) if lock.exists() else set()

    assert locked() == {"a", "b", "stamp"}
    monkeypatch.chdir(tmp_path)
    cluster.drop_lock_entries(["a"])  # the stage named, and nothing else while every output is here
    assert locked() == {"b", "stamp"}
    (tmp_path / "stamp.txt").unlink()  # an uncached output that is missing cannot be pulled
    cluster.drop_lock_entries(["b"])
    assert locked() == set()
