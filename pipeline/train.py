"""Stages `train_sigmoid@<seed>`, `train_relu@<seed>` and `train_extra@<activation>-<seed>`: one
model per stage, the activation and seed given by `--activation` and `--seed`.

Writes `models/<activation>/seed<N>.keras` and `results/train/<activation>/seed<N>/` (history,
diagnostics from epoch 0, and `train.json`), and logs one MLflow run per model: params, metrics and
diagnostics per epoch (step = epoch), the manifest and the model. Seed means are evaluate's job.
"""

from __future__ import annotations

import json
import re
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline import activations, cli, outage, store, tracking
from pipeline.cifar import CIFAR10
from pipeline.diagnostics import DiagnosticsCallback, StepCurveCallback, probe_batch
from pipeline.errors import PipelineError
from pipeline.files import atomic_path, sha256_file, write_json
from pipeline.manifest import collect_manifest
from pipeline.model import build_cnn, compile_model
from pipeline.params import (
    TRAIN_KEYS,
    ModelParams,
    Params,
    TrainParams,
    logged_params,
    stage_name,
)
from pipeline.serving import log_served_model
from pipeline.splits import load_split

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
# Several batches per call into TensorFlow: measured here ~1.5x faster on a 2-core CPU, same numbers.
STEPS_PER_EXECUTION = 32
# Training images the diagnostics probe every epoch (chosen by the seed being trained).
PROBE_SIZE = 256
# The first steps are also measured step by step, on the first validation images (the same for
# every model) and the probe batch: a plateau shorter than an epoch shows there, and so does the
# order of events inside it. 1,408 steps are the default run's first two epochs (704 each).
STEP_CURVE_STEPS = 1408
STEP_CURVE_IMAGES = 1000


class EpochMetricsLogger(keras.callbacks.Callback):
    """Hand Keras' epoch metrics to `log(step, metrics)`, step = epoch (1-based)."""

    def __init__(self, log: Callable[[int, dict[str, float]], None]) -> None:
        super().__init__()
        self.log = log

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.log(epoch + 1, {k: float(v) for k, v in (logs or {}).items() if k in HISTORY_COLUMNS})


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
    verbose: int = 2,
    seed: int | None = None,
    n_classes: int = CIFAR10.n_classes,
) -> tuple[keras.Model, pd.DataFrame]:
    """Build, compile and fit the network; return it with its per-epoch history.

    `seed` defaults to the first of `train_params.seeds`; labels run from 0 to `n_classes` − 1.
    """
    seed_everything(train_params.seeds[0] if seed is None else seed)
    # Keras 3.15's multi-step loop fails under MirroredStrategy (InvalidArgumentError at
    # while/cond/Placeholder), so mirrored training runs one step per call.
    steps = STEPS_PER_EXECUTION if train_params.distribution == "none" else 1
    with make_strategy(train_params.distribution).scope():
        model = build_cnn(activation, model_params, n_classes=n_classes)
        compile_model(model, train_params.learning_rate, steps)
    fit = model.fit(
        train_data[0],
        one_hot(train_data[1], n_classes),
        validation_data=(val_data[0], one_hot(val_data[1], n_classes)),
        batch_size=train_params.batch_size,
        epochs=train_params.epochs,
        shuffle=True,
        callbacks=list(callbacks),
        verbose=verbose,
    )
    history = pd.DataFrame(fit.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return model, history[list(HISTORY_COLUMNS)]


def one_hot(labels: np.ndarray, n_classes: int = CIFAR10.n_classes) -> np.ndarray:
    """Integer labels → float32 one-hot rows, what categorical cross-entropy takes."""
    return np.eye(n_classes, dtype=np.float32)[labels]


@dataclass
class TrainedModel:
    """What training one model produced, in memory: no file written, nothing logged."""

    model: keras.Model
    history: pd.DataFrame  # per epoch
    diagnostics: pd.DataFrame  # per epoch, from epoch 0 (initialisation)
    steps: pd.DataFrame  # the step-by-step curve of the first epochs
    summary: dict  # what train.json holds
    seconds: float  # training, diagnostics included
    diagnostics_seconds: float


def compute(
    activation: str,
    seed: int,
    params: Params,
    train_data: tuple[np.ndarray, np.ndarray],
    val_data: tuple[np.ndarray, np.ndarray],
    log: Callable[[int, dict[str, float]], None] | None = None,
    stop=None,
    n_classes: int = CIFAR10.n_classes,
) -> TrainedModel:
    """Train one model with its diagnostics. `log(epoch, metrics)` receives every epoch's
    metrics as they come; `stop` (a threading.Event) ends training early when set."""
    probe = probe_batch(train_data, PROBE_SIZE, seed)
    diagnostics = DiagnosticsCallback(activation, probe, val_data[0], log=log)
    step_curve = StepCurveCallback(
        val_data[0][:STEP_CURVE_IMAGES],
        val_data[1][:STEP_CURVE_IMAGES],
        STEP_CURVE_STEPS,
        diagnostics,
    )
    callbacks = [StopWhenAsked(stop)] if stop is not None else []
    callbacks += [EpochMetricsLogger(log)] if log is not None else []
    start = time.perf_counter()
    model, history = train(
        activation,
        params.model,
        params.train,
        train_data,
        val_data,
        callbacks=[*callbacks, diagnostics, step_curve],
        seed=seed,
        n_classes=n_classes,
    )
    seconds = time.perf_counter() - start
    steps = step_curve.frame()
    # Only what training alone knows: escape and best epochs are evaluate's to derive, so a
    # change of their definition reruns evaluate, not training.
    last = history.iloc[-1]
    summary = {
        "epochs": int(last["epoch"]),
        **{key: float(last[key]) for key in HISTORY_COLUMNS[1:]},
        "steps_per_epoch": step_curve.params["steps"],
        "step_curve_images": len(step_curve.labels),
        "seed": seed,
        "parameters": int(model.count_params()),
        "train_seconds": round(seconds, 1),
        "diagnostics_seconds": round(diagnostics.seconds + step_curve.seconds, 1),
    }
    return TrainedModel(
        model,
        history,
        diagnostics.frame(),
        steps,
        summary,
        seconds,
        diagnostics.seconds + step_curve.seconds,
    )


def save_model(model: keras.Model, path: Path) -> None:
    """`model.save`, made reproducible to the byte: Keras writes the time of saving (in the
    metadata and the zip entries) and Python object ids (in the config) into a .keras file, so
    the same training would give a different file each time and wherever it ran. Those are set
    to fixed values (the ids renumbered in order); the weights and the rest are Keras' own."""
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    ids: dict[bytes, int] = {}

    def renumber(match: re.Match) -> bytes:
        return b'"shared_object_id": %d' % ids.setdefault(match.group(1), len(ids) + 1)

    with zipfile.ZipFile(path, "w") as archive:
        for info, data in entries:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata).encode()
            elif info.filename == "config.json":
                data = re.sub(rb'"shared_object_id": (\d+)', renumber, data)
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            archive.writestr(fixed, data)


def write(trained: TrainedModel, model_path: Path, results_dir: Path) -> None:
    """The model and its results folder, each atomically."""
    with atomic_path(model_path) as tmp:
        save_model(trained.model, tmp)
    with atomic_path(results_dir) as tmp:
        tmp.mkdir()
        trained.history.to_csv(tmp / "history.csv", index=False, float_format="%.6f")
        trained.diagnostics.to_csv(tmp / "diagnostics.csv", index=False, float_format="%.6g")
        trained.steps.to_csv(tmp / "steps.csv", index=False, float_format="%.6g")
        write_json(tmp / "train.json", trained.summary)


def log_inputs(params: Params, data_dir: Path, activation: str, seed: int, data) -> None:
    """What the run trained on and with, before training starts."""
    for split, context, (images, labels) in zip(
        ("train", "validation"), ("training", "validation"), data, strict=True
    ):
        store.log_split(
            f"{CIFAR10.name}-{split}",
            context,
            images,
            labels,
            params.data.url,
            data_dir / f"{split}.npz",
        )
    tracking.log_params(
        {
            "activation": activation,
            "seed": seed,
            "train_images": len(data[0][1]),
            "val_images": len(data[1][1]),
            "probe_images": PROBE_SIZE,
        }
    )
    tracking.log_dict(run_manifest(seed, params.data.seed, data_dir), "manifest.json")


def logging_steps(
    trained: TrainedModel, activation: str, model_path: Path, results_dir: Path
) -> list[outage.Step]:
    """What is logged after training, each step named for the outage message."""
    final = {"train_seconds": trained.seconds, "diagnostics_seconds": trained.diagnostics_seconds}
    steps = trained.steps
    strategy = getattr(trained.model, "distribute_strategy", None)
    replicas = strategy.num_replicas_in_sync if strategy else 1
    return [
        ("the run's summary metrics", lambda: tracking.log_metrics(final)),
        (
            "the step-by-step validation curve",
            lambda: tracking.log_curve("step_val_accuracy", steps["step"], steps["val_accuracy"]),
        ),
        ("the replicas param", lambda: tracking.log_param("replicas", replicas)),
        ("the model", lambda: log_served_model(trained.model, activation)),
        # Lets evaluate find this run from the model file alone, in any store.
        ("the model_sha256 tag", lambda: tracking.set_tag("model_sha256", sha256_file(model_path))),
        ("the results folder", lambda: tracking.log_artifacts(str(results_dir), "results")),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = cli.stage_parser(__doc__, "data", "models", "results")
    parser.add_argument("--activation", required=True)
    parser.add_argument("--seed", type=int, help="default: the first of train.seeds")
    args, params = cli.parse_stage(parser, argv)
    activation, seed = args.activation, check_seed(args.seed, params)
    activations.resolve(activation)  # an unknown name fails here, before any data is read
    data, n_classes = load_training_data(args.data), n_classes_of(args.data)
    stage = stage_name(activation, seed)
    model_path = args.models / activation / f"seed{seed}.keras"
    results_dir = args.results / activation / f"seed{seed}"
    logged = logged_params(params, TRAIN_KEYS)
    tags = {"seed": str(seed)}
    with tracking.stage_run(
        stage, params.mlflow.experiment, logged, activation, tags, system_metrics=True
    ) as run:
        log_inputs(params, args.data, activation, seed, data)
        background = outage.BackgroundMetrics(run.info.run_id)
        with cli.deferred_stop() as stop:
            trained = compute(
                activation, seed, params, *data, log=background.log, stop=stop, n_classes=n_classes
            )
        # Written before the last logging, so a tracking outage does not throw the training away.
        write(trained, model_path, results_dir)
        steps = logging_steps(trained, activation, model_path, results_dir)
        outage.run_logging_steps(stage, steps, system_metrics=True, background=background)
    summary = trained.summary
    print(
        f"{stage}: val_accuracy {summary['val_accuracy']:.4f}, val_loss {summary['val_loss']:.4f} "
        f"after {summary['epochs']} epochs ({trained.seconds:.0f} s)"
    )


def check_seed(seed: int | None, params: Params) -> int:
    """--seed, or the first of train.seeds."""
    seed = params.train.seeds[0] if seed is None else seed
    if seed < 0:
        raise PipelineError(f"--seed must be 0 or more, got {seed}")
    return seed


def load_training_data(data_dir: Path):
    """(train, validation) splits as preprocess wrote them."""
    train_data, val_data = load_split(data_dir, "train"), load_split(data_dir, "validation")
    if len(train_data[1]) == 0:
        raise PipelineError("the training split is empty; check data.train_limit and data.val_size")
    return train_data, val_data


def n_classes_of(data_dir: Path) -> int:
    """How many classes preprocess kept (data.classes), from the meta.json it wrote."""
    try:
        return len(json.loads((data_dir / "meta.json").read_text())["class_names"])
    except FileNotFoundError:
        raise PipelineError(
            f"{data_dir}/meta.json not found; run `dvc repro preprocess` first"
        ) from None


def run_manifest(seed: int, data_seed: int, data_dir: Path) -> dict:
    threads = {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        "note": "0 = TensorFlow's default (one per core)",
    }
    seeds = {"seed": seed, "data.seed": data_seed}
    return collect_manifest(seeds, data_dir, threads)


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
