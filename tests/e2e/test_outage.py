"""A real tracking server that goes away while a model trains: training goes on; an outage MLflow's
retries outlast loses nothing, a longer one ends the stage after training with one line."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
from project import MlflowServer, logged_runs, stage_env, train_cmd, write_params

pytestmark = [pytest.mark.slow, pytest.mark.servers]

EPOCHS = 20
# How long the server stays down in the first test. The suite uses 10 s; the README's 2-minute
# bound was shown by running this test with OUTAGE_SECONDS=120.
OUTAGE_SECONDS = float(os.environ.get("OUTAGE_SECONDS", "10"))
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


def start_training(workspace: Path, out: Path, uri: str, **env: str) -> subprocess.Popen:
    params = write_params(out / "params.yaml", workspace / "params.yaml", train__epochs=EPOCHS)
    return subprocess.Popen(
        train_cmd("relu", params, workspace / "processed", out),
        env=stage_env(uri, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen, prefix: str, seen: list[str]) -> None:
    """Collect the stage's output lines into `seen` until one starts with `prefix`."""
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return
    raise AssertionError("the stage ended before " + prefix + ":\n" + "".join(seen)[-3000:])


def test_an_outage_within_the_retries_loses_nothing(workspace, tmp_path):
    server = MlflowServer(tmp_path).start()
    try:
        proc = start_training(workspace, tmp_path, server.uri)
        seen: list[str] = []
        read_until(proc, "Epoch 3/", seen)
        server.kill()
        down = time.monotonic()
        # Training goes on while nothing answers: its last epoch comes with the server down.
        read_until(proc, f"Epoch {EPOCHS}/", seen)
        trained_while_down = time.monotonic() - down
        assert trained_while_down < 60, f"training waited {trained_while_down:.0f} s on the server"
        time.sleep(max(0.0, OUTAGE_SECONDS - trained_while_down))
        assert proc.poll() is None, "".join(seen)
        server.start()
        rest, _ = proc.communicate(timeout=300)
    finally:
        server.stop()
    output = "".join(seen) + rest
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "error:" not in output
    server.start()  # read back through the restarted server
    try:
        (run,) = logged_runs(server.uri)
        client = mlflow.MlflowClient()
        assert run.info.status == "FINISHED"
        for key in HISTORY_KEYS:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == list(range(1, EPOCHS + 1)), key
        grads = client.get_metric_history(run.info.run_id, "grad_norm/dense/kernel")
        assert sorted(m.step for m in grads) == list(range(EPOCHS + 1))
        assert "model_sha256" in run.data.tags and "escape_epoch" in run.data.metrics
        assert "system/cpu_utilization_percentage" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "results")}
        assert artifacts == {
            f"results/{n}" for n in ("diagnostics.csv", "history.csv", "train.json")
        }
        (model,) = mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id], output_format="list"
        )
        assert model.source_run_id == run.info.run_id
    finally:
        server.stop()


def test_a_longer_outage_ends_the_stage_after_training_with_one_line(workspace, tmp_path):
    # Two retries, 2 s of waiting in all: the bound, set by MLflow's own settings.
    server = MlflowServer(tmp_path).start()
    retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    try:
        proc = start_training(workspace, tmp_path, server.uri, **retries)
        seen: list[str] = []
        read_until(proc, "Epoch 3/", seen)
        server.kill()
        stopped = time.monotonic()
        rest, _ = proc.communicate(timeout=300)
        took = time.monotonic() - stopped
    finally:
        server.stop()
    output = "".join(seen) + rest
    assert proc.returncode == 1, output[-3000:]
    assert f"Epoch {EPOCHS}/{EPOCHS}" in output, "training did not finish"
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output[-3000:]
    assert server.uri in errors[0] and "not logged: the metrics of epochs " in errors[0]
    assert "the model; the model_sha256 tag; the results folder; system metrics" in errors[0]
    assert "dvc repro train_relu@42" in errors[0]
    # The training was not thrown away.
    assert (tmp_path / "models" / "relu" / "seed42.keras").is_file()
    assert (tmp_path / "results" / "relu" / "seed42" / "history.csv").is_file()
    assert took < 120, f"the stage took {took:.0f} s to give up"
