"""Training on the tiny archive, in process: outputs, MLflow logging, determinism."""

from __future__ import annotations

import hashlib
import json
import os

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from project import logged_runs, write_params

from pipeline import preprocess, splits, train
from pipeline.diagnostics import probe_batch
from pipeline.model import CUSTOM_OBJECTS
from pipeline.params import load_params


@pytest.fixture(scope="module")
def processed(tmp_path_factory, tiny_archive):
    out = tmp_path_factory.mktemp("processed") / "processed"
    params = tmp_path_factory.mktemp("params") / "params.yaml"
    write_params(params, data__val_size=50, train__epochs=2)
    preprocess.main(
        ["--params", str(params), "--archive", str(tiny_archive[0]), "--output", str(out)]
    )
    return out, params


def weights_digest(model) -> str:
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def test_same_params_give_identical_history_and_weights(processed):
    data, params_path = processed
    params = load_params(params_path)
    data_splits = [splits.load_split(data, name) for name in ("train", "validation")]
    runs = [
        train.train("relu", params.model, params.train, *data_splits, verbose=0) for _ in range(2)
    ]
    (model_a, history_a), (model_b, history_b) = runs
    pd.testing.assert_frame_equal(history_a, history_b, check_exact=True)
    assert weights_digest(model_a) == weights_digest(model_b)


def run_stage(processed, activation: str, out) -> None:
    """The train stage's main() on the tiny data, writing under `out`."""
    data, params_path = processed
    train.main(
        [
            "--activation",
            activation,
            "--params",
            str(params_path),
            "--data",
            str(data),
            "--models",
            str(out / "models"),
            "--results",
            str(out / "results"),
        ]
    )


def test_main_writes_outputs_and_logs_each_epoch(processed, tmp_path):
    run_stage(processed, "sigmoid", tmp_path)
    history = pd.read_csv(tmp_path / "results/sigmoid/seed42/history.csv")
    assert list(history.columns) == list(train.HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2]
    summary = json.loads((tmp_path / "results/sigmoid/seed42/train.json").read_text())
    assert summary["parameters"] == 923_914
    assert summary["val_accuracy"] == pytest.approx(history["val_accuracy"].iloc[-1])
    assert (tmp_path / "models/sigmoid/seed42.keras").is_file()
    (run,) = logged_runs()
    assert run.info.status == "FINISHED" and run.info.run_name == "train_sigmoid@42"
    assert run.data.tags["seed"] == "42" and run.data.params["seed"] == "42"
    steps = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in steps] == [1, 2]
    assert [m.value for m in steps] == pytest.approx(history["val_accuracy"].tolist(), abs=1e-6)


def test_main_records_diagnostics_from_epoch_zero(processed, tmp_path):
    run_stage(processed, "relu", tmp_path)
    diagnostics = pd.read_csv(tmp_path / "results/relu/seed42/diagnostics.csv")
    assert diagnostics["epoch"].tolist() == [0, 1, 2]
    for column in (
        "grad_norm/conv2d/kernel",
        "grad_norm/dense_1/bias",
        "dead_fraction/conv2d",
        "dead_fraction/dense",
        "mean_activation/dense",
        "mean_slope/conv2d",
        "mean_slope/dense",
        "plateau_share",
    ):
        assert column in diagnostics.columns, column
    assert (diagnostics["grad_norm/conv2d/kernel"] > 0).all()
    summary = json.loads((tmp_path / "results/relu/seed42/train.json").read_text())
    steps = pd.read_csv(tmp_path / "results/relu/seed42/steps.csv")
    per_epoch = summary["steps_per_epoch"]
    # Step 0, then every call into TensorFlow (32 steps) through the first two epochs.
    assert steps["step"].iloc[0] == 0 and steps["step"].iloc[-1] == 2 * per_epoch
    assert steps["step"].is_monotonic_increasing and len(steps) > 2
    assert steps["epoch"].iloc[-1] == pytest.approx(2.0)
    # The last epoch's numbers, measured again on the saved (final) model.
    data, _ = processed
    model = keras.saving.load_model(
        tmp_path / "models/relu/seed42.keras", custom_objects=CUSTOM_OBJECTS
    )
    val_images, val_labels = splits.load_split(data, "validation")
    predicted = model.predict(val_images, verbose=0).argmax(axis=1)
    last = diagnostics.iloc[-1]
    top_share = np.bincount(predicted, minlength=10).max() / len(predicted)
    assert last["plateau_share"] == pytest.approx(top_share)
    # ReLU's slope is 0 or 1, so its mean is the share of positive inputs on the probe batch.
    probe_images, _ = probe_batch(splits.load_split(data, "train"), train.PROBE_SIZE, 42)
    dense = keras.Model(model.inputs, model.get_layer("dense").output)
    active = np.asarray(dense([probe_images], training=False)) > 0
    assert last["mean_slope/dense"] == pytest.approx(active.mean(), abs=1e-6)
    n = summary["step_curve_images"]
    accuracy = np.mean(predicted[:n] == val_labels[:n])
    assert steps["val_accuracy"].iloc[-1] == pytest.approx(accuracy)
    # The layers too, step by step; the last step is the end of training, where the epoch probe
    # measured the same weights on the same images.
    for column in ("mean_slope/conv2d", "mean_slope/dense", "saturated_fraction/dense"):
        assert steps[column].iloc[-1] == pytest.approx(diagnostics[column].iloc[-1], rel=1e-5)
    client = mlflow.MlflowClient()
    (run,) = logged_runs()
    logged_steps = client.get_metric_history(run.info.run_id, "step_val_accuracy")
    assert [m.step for m in logged_steps] == steps["step"].tolist()
    steps = client.get_metric_history(run.info.run_id, "grad_norm/dense/kernel")
    assert [m.step for m in steps] == [0, 1, 2]
    manifest = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/manifest.json")
    assert manifest["seeds"] == {"seed": 42, "data.seed": 42}
    assert set(manifest["data_sha256"]) >= {"train.npz", "validation.npz", "test.npz"}
    assert {"keras", "mlflow", "dvc", "python"} <= set(manifest["versions"])
    assert manifest["machine"]["cores"] == os.cpu_count() and "intra_op" in manifest["threads"]


def test_compute_trains_without_files_or_a_tracking_store(processed, tmp_path, monkeypatch):
    """The stage's computation alone: a model, its curves and summary, nothing written or
    logged (the store the environment names is never created)."""
    store = tmp_path / "never.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.chdir(tmp_path)
    data, params_path = processed
    params = load_params(params_path)
    data_splits = [splits.load_split(data, name) for name in ("train", "validation")]
    logged = []
    trained = train.compute("tanh", 7, params, *data_splits, log=lambda e, m: logged.append(e))
    assert list(trained.history["epoch"]) == [1, 2]
    assert list(trained.diagnostics["epoch"]) == [0, 1, 2]
    assert trained.summary["seed"] == 7 and trained.summary["epochs"] == 2
    assert sorted(set(logged)) == [0, 1, 2]  # diagnostics from epoch 0, metrics per epoch
    assert not store.exists() and list(tmp_path.iterdir()) == []
