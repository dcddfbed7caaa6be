"""A user's mistake ends in one line naming the problem and the fix, a non-zero exit, no output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from project import stage_env, write_params


def run_stage(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"pipeline.{module}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        # The isolated store the autouse fixture set for this test.
        env=stage_env(os.environ["MLFLOW_TRACKING_URI"]),
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_wrong_url_writes_nothing(tmp_path):
    missing = (tmp_path / "nowhere.tar.gz").as_uri()
    params = write_params(tmp_path / "params.yaml", data__url=missing)
    result = run_stage(
        "download", "--params", str(params), "--output", "raw/a.tar.gz", cwd=tmp_path
    )
    # Naming the URL params.yaml gave: a stage that ignored it would name another.
    assert_one_line_error(result, f"cannot reach {missing} ", "data.url")
    assert not (tmp_path / "raw" / "a.tar.gz").exists()


def test_checksum_mismatch_keeps_earlier_output(tmp_path, tiny_archive):
    params = write_params(
        tmp_path / "params.yaml", data__url=tiny_archive[0].as_uri(), data__sha256="1" * 64
    )
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.tar.gz").write_bytes(b"earlier")
    result = run_stage(
        "download", "--params", str(params), "--output", "raw/a.tar.gz", cwd=tmp_path
    )
    # Naming the checksum params.yaml gave: a stage that checked another would name that one.
    assert_one_line_error(
        result, "checksum mismatch", f"expected sha256 {'1' * 64},", "data.sha256"
    )
    assert (tmp_path / "raw" / "a.tar.gz").read_bytes() == b"earlier"
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["a.tar.gz"]


def test_corrupt_archive_writes_no_processed_data(tmp_path):
    params = write_params(tmp_path / "params.yaml")
    (tmp_path / "bad.tar.gz").write_bytes(b"\x1f\x8b\x08garbage")
    result = run_stage(
        "preprocess",
        "--params",
        str(params),
        "--archive",
        "bad.tar.gz",
        "--output",
        "processed",
        cwd=tmp_path,
    )
    assert_one_line_error(result, "corrupt or truncated")
    assert not (tmp_path / "processed").exists()


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"train__epochs": "ten"}, "train.epochs"),
        ({"train__batch_size": 0}, "train.batch_size"),
        ({"data__val_size": -5}, "data.val_size"),
    ],
)
def test_bad_params_are_rejected_before_work(tmp_path, override, fragment):
    params = write_params(tmp_path / "params.yaml", **override)
    paths = ("--archive", "absent.tar.gz", "--output", "processed")
    result = run_stage("preprocess", "--params", str(params), *paths, cwd=tmp_path)
    assert_one_line_error(result, fragment)


def test_unknown_activation(tmp_path):
    params = write_params(tmp_path / "params.yaml")
    paths = ("--data", "processed", "--models", "models", "--results", "results")
    result = run_stage(
        "train", "--params", str(params), "--activation", "swishy", *paths, cwd=tmp_path
    )
    assert_one_line_error(result, "unknown activation 'swishy'", "keras.activations")
