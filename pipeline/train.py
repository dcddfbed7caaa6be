"""Stages `train_sigmoid`, `train_relu` and `train_extra@<name>`: one module, the activation
given by `--activation`.

For each seed in `train.seeds`, writes `models/<activation>/seed<N>.keras` and logs a nested
MLflow run (metrics and diagnostics per epoch, step = epoch; the model). `results/<activation>/`
gets the seed-mean history and diagnostics (DVC plots files), the per-seed curves and the final
metrics; the stage's own MLflow run carries the seed means.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd
import tensorflow as tf
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from pipeline import tracking
from pipeline.cifar import IMAGE_SHAPE, N_CLASSES
from pipeline.diagnostics import Diagnoser, DiagnosticsRecorder, escape_epoch
from pipeline.errors import PipelineError, run_cli
from pipeline.files import atomic_path, write_json
from pipeline.manifest import collect_manifest
from pipeline.model import build_cnn, compile_model
from pipeline.params import (
    MAIN_ACTIVATIONS,
    ModelParams,
    Params,
    TrainParams,
    check_activation,
    flatten,
    load_params,
)
from pipeline.preprocess import load_split

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
# Several batches per call into TensorFlow: measured here ~1.5x faster on a 2-core CPU, same numbers.
STEPS_PER_EXECUTION = 32
# Training images the diagnostics probe every epoch (chosen by the seed being trained).
PROBE_SIZE = 256


class MlflowEpochLogger(keras.callbacks.Callback):
    """Log Keras' epoch metrics to the active MLflow run, step = epoch (1-based)."""

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items() if k in HISTORY_COLUMNS}
        mlflow.log_metrics(metrics, step=epoch + 1)


class StopWhenAsked(keras.callbacks.Callback):
    """Ends training after the current batches once `event` is set (by a stop signal)."""

    def __init__(self, event) -> None:
        super().__init__()
        self.event = event

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.event.is_set():
            self.model.stop_training = True


def seed_everything(seed: int) -> None:
    """Same seed, same machine → same weights, same data order, same history.

    TensorFlow's op-determinism mode is not needed for that on CPU (a test checks it), and it
    would change the arithmetic away from the tutorial's.
    """
    keras.utils.set_random_seed(seed)


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """`none`: TensorFlow's default (one device). `mirrored`: data-parallel over every GPU or,
    without GPUs, every logical CPU device (one unless the process split the CPU)."""
    if distribution == "none":
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    raise ValueError(f"unknown distribution {distribution!r}; choose none or mirrored")


def train(
    activation: str,
    model_params: ModelParams,
    train_params: TrainParams,
    train_data: tuple[np.ndarray, np.ndarray],
    val_data: tuple[np.ndarray, np.ndarray],
    callbacks: Sequence[keras.callbacks.Callback] = (),
    diagnose: Callable[[keras.Model], keras.callbacks.Callback] | None = None,
    verbose: int = 2,
    seed: int | None = None,
) -> tuple[keras.Model, pd.DataFrame]:
    """Build, compile and fit the network; return it with its per-epoch history.

    `diagnose(model)`, when given, makes a callback that watches the model as it trains.
    `seed` defaults to the first of `train_params.seeds`.
    """
    check_activation(activation)
    seed_everything(train_params.seeds[0] if seed is None else seed)
    # Keras 3.15's multi-step loop fails under MirroredStrategy (InvalidArgumentError at
    # while/cond/Placeholder), so mirrored training runs one step per call.
    steps = STEPS_PER_EXECUTION if train_params.distribution == "none" else 1
    with make_strategy(train_params.distribution).scope():
        model = build_cnn(activation, model_params)
        compile_model(model, train_params.learning_rate, steps)
    callbacks = [*callbacks, *([diagnose(model)] if diagnose else [])]
    fit = model.fit(
        train_data[0],
        one_hot(train_data[1]),
        validation_data=(val_data[0], one_hot(val_data[1])),
        batch_size=train_params.batch_size,
        epochs=train_params.epochs,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    history = pd.DataFrame(fit.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return model, history[list(HISTORY_COLUMNS)]


def one_hot(labels: np.ndarray) -> np.ndarray:
    """Integer labels → float32 one-hot rows, what categorical cross-entropy takes."""
    return np.eye(N_CLASSES, dtype=np.float32)[labels]


def summarize(history: pd.DataFrame) -> dict[str, float | int | None]:
    """Final-epoch numbers, the best validation accuracy and the escape epoch."""
    last = history.iloc[-1]
    best = history.loc[history["val_accuracy"].idxmax()]
    return {
        "epochs": int(last["epoch"]),
        "loss": float(last["loss"]),
        "accuracy": float(last["accuracy"]),
        "val_loss": float(last["val_loss"]),
        "val_accuracy": float(last["val_accuracy"]),
        "best_val_accuracy": float(best["val_accuracy"]),
        "best_epoch": int(best["epoch"]),
        "escape_epoch": escape_epoch(history["val_accuracy"].tolist()),
    }


def model_signature() -> ModelSignature:
    """uint8 images in, class probabilities out."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *IMAGE_SHAPE), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, N_CLASSES), "probabilities")]),
    )


@dataclass
class SeedResult:
    seed: int
    history: pd.DataFrame  # per epoch
    diagnostics: pd.DataFrame  # per epoch, from 0
    seconds: float  # training wall time, diagnostics included
    diagnostics_seconds: float  # the diagnostics' own share of it
    replicas: int  # devices the training ran on
    parameters: int  # the model's parameter count


def train_seed(
    activation: str,
    seed: int,
    params: Params,
    train_data: tuple[np.ndarray, np.ndarray],
    val_data: tuple[np.ndarray, np.ndarray],
    model_path: Path,
) -> SeedResult:
    """Train one model in the active (child) run: metrics per epoch, diagnostics, the model."""
    recorder = DiagnosticsRecorder(sink=lambda step, m: mlflow.log_metrics(m, step=step))
    diagnose = Diagnoser(activation, seed, train_data, val_data[0], recorder.record, PROBE_SIZE)
    start = time.perf_counter()
    with tracking.deferred_stop() as stop:
        model, history = train(
            activation,
            params.model,
            params.train,
            train_data,
            val_data,
            callbacks=[StopWhenAsked(stop), MlflowEpochLogger()],
            diagnose=diagnose,
            seed=seed,
        )
    seconds = time.perf_counter() - start
    strategy = getattr(model, "distribute_strategy", None)
    result = SeedResult(
        seed,
        history,
        recorder.frame(),
        seconds,
        diagnose.seconds,
        strategy.num_replicas_in_sync if strategy else 1,
        int(model.count_params()),
    )
    mlflow.log_params({"seed": seed, "replicas": result.replicas})
    mlflow.log_metrics(
        {"train_seconds": seconds, "diagnostics_seconds": result.diagnostics_seconds}
    )
    mlflow.keras.log_model(
        model, name="model", signature=model_signature(), pip_requirements=pip_requirements()
    )
    model.save(model_path)
    return result


def mean_over_seeds(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per-epoch mean of per-seed frames (with one seed: that seed's frame)."""
    return pd.concat(frames).groupby("epoch", as_index=False).mean()


def long_format(results: Sequence[SeedResult], attribute: str) -> pd.DataFrame:
    """Per-seed frames stacked, with a `seed` column first."""
    return pd.concat([getattr(r, attribute).assign(seed=r.seed) for r in results])[
        ["seed", *getattr(results[0], attribute).columns]
    ]


def write_results(
    results: Sequence[SeedResult],
    history: pd.DataFrame,
    diagnostics: pd.DataFrame,
    summary: dict,
    results_dir: Path,
) -> None:
    """The results folder, atomically: seed-mean curves (`history`, `diagnostics`) for DVC
    plots, per-seed curves, and the summary."""
    with atomic_path(results_dir) as tmp:
        tmp.mkdir()
        history.to_csv(tmp / "history.csv", index=False, float_format="%.6f")
        long_format(results, "history").to_csv(
            tmp / "history_seeds.csv", index=False, float_format="%.6f"
        )
        diagnostics.to_csv(tmp / "diagnostics.csv", index=False, float_format="%.6g")
        long_format(results, "diagnostics").to_csv(
            tmp / "diagnostics_seeds.csv", index=False, float_format="%.6g"
        )
        write_json(tmp / "train.json", summary)


def log_means(history: pd.DataFrame, diagnostics: pd.DataFrame) -> None:
    """The stage run carries the seed-mean curves under the same keys the seed runs use."""
    for frame in (history, diagnostics):
        for _, row in frame.iterrows():
            values = {k: float(v) for k, v in row.items() if k != "epoch"}
            mlflow.log_metrics(values, step=int(row["epoch"]))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activation", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    activation = check_activation(args.activation)
    params = load_params(args.params)
    train_data = load_split(args.data, "train")
    val_data = load_split(args.data, "validation")
    if len(train_data[1]) == 0:
        raise PipelineError("the training split is empty; check data.train_limit and data.val_size")
    logged = flatten("model", params.model) | flatten("train", params.train)
    stage = f"train_{activation}" if activation in MAIN_ACTIVATIONS else f"train_extra@{activation}"
    with tracking.stage_run(stage, params.mlflow.experiment, logged, activation=activation):
        mlflow.log_params(
            {
                "activation": activation,
                "train_images": len(train_data[1]),
                "val_images": len(val_data[1]),
                "probe_images": PROBE_SIZE,
            }
        )
        mlflow.log_dict(
            run_manifest(params.train.seeds, params.data.seed, args.data), "manifest.json"
        )
        results = []
        with atomic_path(args.models / activation) as models_tmp:
            models_tmp.mkdir()
            for seed in params.train.seeds:
                with tracking.child_run(f"{stage}/seed{seed}", {"seed": str(seed)}):
                    results.append(
                        train_seed(
                            activation,
                            seed,
                            params,
                            train_data,
                            val_data,
                            models_tmp / f"seed{seed}.keras",
                        )
                    )
        history = mean_over_seeds([r.history for r in results])
        diagnostics = mean_over_seeds([r.diagnostics for r in results])
        seconds = sum(r.seconds for r in results)
        summary = summarize(history) | {
            "seeds": len(results),
            "parameters": results[0].parameters,
            "train_seconds": round(seconds, 1),
            "diagnostics_seconds": round(sum(r.diagnostics_seconds for r in results), 1),
        }
        log_means(history, diagnostics)
        mlflow.log_param("replicas", results[0].replicas)
        mlflow.log_metrics(
            {"train_seconds": seconds, "diagnostics_seconds": summary["diagnostics_seconds"]}
        )
        if summary["escape_epoch"] is not None:
            mlflow.log_metric("escape_epoch", summary["escape_epoch"])
        results_dir = args.results / activation
        write_results(results, history, diagnostics, summary, results_dir)
        mlflow.log_artifacts(str(results_dir), artifact_path="results")
    print(
        f"{stage}: mean over {len(results)} seed(s): val_accuracy "
        f"{summary['val_accuracy']:.4f}, val_loss {summary['val_loss']:.4f} after "
        f"{summary['epochs']} epochs ({seconds:.0f} s)"
    )


def run_manifest(train_seeds: Sequence[int], data_seed: int, data_dir: Path) -> dict:
    threads = {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        "note": "0 = TensorFlow's default (one per core)",
    }
    seeds = {"train.seeds": list(train_seeds), "data.seed": data_seed}
    return collect_manifest(seeds, data_dir, threads)


def pip_requirements() -> list[str]:
    """Stated, so MLflow need not load the model in a subprocess to infer them."""
    return [f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"]


if __name__ == "__main__":
    sys.exit(run_cli(main))
