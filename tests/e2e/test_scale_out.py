"""Beyond one machine, with real processes: an MLflow tracking server, a DVC remote, and
mirrored training over two logical CPU devices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from project import commit, logged_runs, run, stage_env, write_params

pytestmark = pytest.mark.slow

# Stages that log an MLflow run (check_params computes nothing to track).
STAGES = ["download", "preprocess", "train_sigmoid@42", "train_relu@42", "evaluate", "report"]


@pytest.mark.servers
def test_every_stage_logs_to_the_server(served_repo, tracking_server):
    root, _ = served_repo
    uri, server_root = tracking_server
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cifar10-activations")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == sorted(STAGES)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert not (root / "mlflow.db").exists()  # nothing went to a local store
    for activation in ("sigmoid", "relu"):
        run_id = by_name[f"train_{activation}@42"].info.run_id
        assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [1]
        assert [m.step for m in client.get_metric_history(run_id, "grad_norm/conv2d/kernel")] == [
            0,
            1,
        ]
    report_id = by_name["report"].info.run_id
    files = {a.path for a in client.list_artifacts(report_id, "report/figures")}
    assert {"report/figures/curves.png", "report/figures/gradients.png"} <= files
    mlflow.set_tracking_uri(uri)
    text = Path(
        mlflow.artifacts.download_artifacts(run_id=report_id, artifact_path="report/report.md")
    ).read_text()
    assert text.startswith("# Sigmoid vs ReLU on CIFAR-10")
    # Artifacts went through the server into its --artifacts-destination.
    assert any((server_root / "artifacts").rglob("report.md"))


@pytest.mark.servers
def test_push_clone_pull_restores_everything_without_retraining(served_repo, tmp_path):
    root, env = served_repo
    remote = tmp_path / "remote"  # a local folder standing in for S3 or GCS
    run(["dvc", "remote", "add", "--default", "store", str(remote)], root, env)
    commit(root, env, "results and remote")
    run(["dvc", "push"], root, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    assert not (clone / "models").exists()
    run(["dvc", "pull"], clone, env)
    assert "up to date" in run(["dvc", "status"], clone, env)
    for path in (
        "data/raw/cifar-10-python.tar.gz",
        "data/processed/train.npz",
        "models/sigmoid/seed42.keras",
        "models/relu/seed42.keras",
    ):
        assert (clone / path).read_bytes() == (root / path).read_bytes(), path
    assert json.loads((clone / "results/test_metrics.json").read_text()) == json.loads(
        (root / "results/test_metrics.json").read_text()
    )
    again = run(["dvc", "repro"], clone, env)
    assert "Running stage" not in again


SPLIT_AND_TRAIN = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
from pipeline import train
train.main(sys.argv[1:])
"""


def test_mirrored_training_over_two_logical_cpus(tmp_path, tiny_archive):
    from pipeline import preprocess

    results = {}
    for distribution in ("none", "mirrored"):
        path = write_params(
            tmp_path / f"{distribution}.yaml",
            data__val_size=50,
            train__epochs=3,
            train__distribution=distribution,
        )
        if distribution == "none":
            preprocess.main(
                [
                    "--params",
                    str(path),
                    "--archive",
                    str(tiny_archive[0]),
                    "--output",
                    str(tmp_path / "processed"),
                ]
            )
        out = tmp_path / distribution
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                SPLIT_AND_TRAIN,
                "--activation",
                "relu",
                "--params",
                str(path),
                "--data",
                str(tmp_path / "processed"),
                "--models",
                str(out / "models"),
                "--results",
                str(out / "results"),
            ],
            env=stage_env(uri),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[distribution] = pd.read_csv(out / "results/relu/seed42/history.csv")
    all_runs = logged_runs(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {
        r.data.params["train.distribution"]: r
        for r in all_runs
        if r.info.run_name == "train_relu@42"
    }
    assert runs["mirrored"].data.params["replicas"] == "2"
    assert runs["none"].data.params["replicas"] == "1"
    assert set(runs["mirrored"].data.metrics) == set(runs["none"].data.metrics)
    assert list(results["mirrored"].columns) == list(results["none"].columns)
    # The tiny classes are easy: both must learn them; stated tolerance 0.1 in accuracy.
    final = {d: h["val_accuracy"].iloc[-1] for d, h in results.items()}
    assert final["none"] > 0.8
    assert abs(final["mirrored"] - final["none"]) <= 0.1, final
