"""Mirrored training over two logical CPU devices, as a real process: the same metric keys and
close results as training on one device."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
from project import logged_runs, stage_env, write_params

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
