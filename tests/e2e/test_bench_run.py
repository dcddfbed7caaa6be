"""`make bench` end to end on the tiny archive: both paths train, and their metrics agree."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from project import PROJECT, clean_env


@pytest.mark.slow
def test_bench_runs_both_paths_and_finds_the_same_metrics(tiny_archive):
    archive, _ = tiny_archive
    options = ["--archive", str(archive), "--epochs", "1", "--rounds", "1"]
    result = subprocess.run(
        [sys.executable, "tools/bench.py", *options],
        cwd=PROJECT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for path in ("tutorial", "ours", "ours+diagnostics"):
        assert any(re.match(rf"round 1 {re.escape(path)} *: ", line) for line in lines), lines
    for path in ("ours", "ours+diagnostics"):
        assert any(line.startswith(f"throughput ratio {path}/tutorial: ") for line in lines)
        assert (
            f"{path} vs tutorial per-epoch metrics: largest difference 0.000000, "
            "the same to 3 decimals" in lines
        ), result.stdout
