"""The README's smoke run (its ```sh smoke block), as written, in a user's clone: a temporary
copy trains both models on a subset and leaves the clone's files as they were. A test of its own
so that it runs beside test_readme.py's longer chain of commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from project import env_without_venv, installed_clone, readme_blocks, start_script

# The smoke run's subset, shrunk to what the tiny archive has (350 training images).
SMOKE_SUBSET = ("data.train_limit=2000", "data.train_limit=200")


@pytest.mark.slow
def test_the_smoke_run_trains_both_models_in_a_temporary_copy(tmp_path, tiny_archive):
    (block,) = readme_blocks("smoke")
    assert SMOKE_SUBSET[0] in block, "the smoke run's subset moved; update SMOKE_SUBSET"
    root = installed_clone(tmp_path / "clone", *tiny_archive)
    before = user_files(root)
    script = "source .venv/bin/activate\n" + block.replace(*SMOKE_SUBSET)
    log = tmp_path / "smoke.log"
    returncode = start_script(script, root, env_without_venv(), log).wait(timeout=600)
    output = log.read_text()
    assert returncode == 0, output[-5000:]
    assert "Traceback" not in output
    assert re.findall(r"Running stage '(train_[^']+)'", output) == [
        "train_sigmoid@42",
        "train_relu@42",
    ]
    # `dvc exp show --only-changed` lists the smoke run by the name `dvc exp run` gave it.
    (name,) = re.findall(r"^Ran experiment\(s\): (\S+)$", output, re.M)
    assert f"[{name}]" in output.split("Ran experiment(s)")[-1], output[-3000:]
    assert user_files(root) == before, "the smoke run changed the clone's own files"


def user_files(root: Path) -> dict[str, bytes]:
    """Every file of the clone with its content, but git's, DVC's, the venv's and MLflow's store
    (where the smoke run is tracked beside the others)."""
    kept_apart = {".git", ".dvc", ".venv", "mlartifacts", "mlflow.db", "mlflow.db.lock"}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not kept_apart & set(p.relative_to(root).parts)
    }
