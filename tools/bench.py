"""`make bench`: the tutorial's training path against ours, side by side on the same data.

A developer's tool, not a pipeline stage: `python tools/bench.py --archive …`.

Each measurement runs in its own process (so peak memory is that path's alone), the two paths
alternate, and the ratios come from the same run on the same machine. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.cli import run_cli
from pipeline.errors import PipelineError
from pipeline.manifest import cpu_model

PATHS = ("tutorial", "ours", "ours+diagnostics")


def load_data(archive: Path, limit: int) -> tuple[np.ndarray, ...]:
    """Training and test arrays (uint8) straight from the archive, first `limit` training images."""
    from pipeline.cifar import read_cifar10

    if not archive.is_file():
        raise PipelineError(f"{archive} not found; pass --archive or run `dvc repro download`")
    with open(archive, "rb") as handle:
        cifar = read_cifar10(handle)
    n = limit or len(cifar.train_labels)
    return cifar.train_images[:n], cifar.train_labels[:n], cifar.test_images, cifar.test_labels


def train_tutorial(data: tuple[np.ndarray, ...], activation: str, epochs: int, seed: int):
    """The tutorial's code path: float64 arrays in [0, 1], one-hot labels, Keras defaults."""
    import keras
    from keras import layers

    x_train, y_train, x_test, y_test = data
    x_train, x_test = x_train / 255.0, x_test / 255.0
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            layers.Conv2D(32, (3, 3), activation=activation),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(128, activation=activation),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    timer = make_epoch_timer()
    fit = model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=64,
        validation_data=(x_test, y_test),
        callbacks=[timer],
        verbose=0,
    )
    return fit.history, timer.seconds, 0.0


def train_ours(
    data: tuple[np.ndarray, ...], activation: str, epochs: int, seed: int, diagnostics: bool
):
    """The train stage's own `train()`, validating on the test set as the tutorial did."""
    from pipeline.diagnostics import DiagnosticsCallback, probe_batch
    from pipeline.model import TUTORIAL
    from pipeline.params import TrainParams
    from pipeline.train import PROBE_SIZE, train

    x_train, y_train, x_test, y_test = data
    timer = make_epoch_timer()
    params = TrainParams(
        epochs=epochs,
        batch_size=64,
        learning_rate=1e-3,
        seeds=(seed,),
        distribution="none",
        extra_activations=(),
    )
    probe = probe_batch((x_train, y_train), PROBE_SIZE, seed)
    watch = DiagnosticsCallback(activation, probe, x_test)
    _, history = train(
        activation,
        TUTORIAL,
        params,
        (x_train, y_train),
        (x_test, y_test),
        callbacks=[timer, watch] if diagnostics else [timer],
        verbose=0,
    )
    history = {k: history[k].tolist() for k in history.columns if k != "epoch"}
    return history, timer.seconds, watch.seconds


def make_epoch_timer():
    """A Keras callback timing each epoch (built here so keras loads only in the child)."""
    import keras

    class _EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return _EpochTimer()


def measure(path: str, archive: Path, limit: int, activation: str, epochs: int, seed: int) -> dict:
    """One path's run in this process: per-epoch metrics and seconds, peak memory."""
    data = load_data(archive, limit)
    if path == "tutorial":
        history, seconds, diagnostics = train_tutorial(data, activation, epochs, seed)
    else:
        diagnose = path == "ours+diagnostics"
        history, seconds, diagnostics = train_ours(data, activation, epochs, seed, diagnose)
    images = len(data[1]) + len(data[3])  # each epoch trains on one set and validates on the other
    return {
        "path": path,
        "history": {k: [float(v) for v in values] for k, values in history.items()},
        "epoch_seconds": seconds,
        "diagnostics_seconds": diagnostics,
        "images_per_epoch": images,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_child(path: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        path,
        "--archive",
        str(args.archive),
        "--limit",
        str(args.limit),
        "--activation",
        args.activation,
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PipelineError(f"benchmark of the {path} path failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def throughput(run: dict) -> float:
    """Images per second over the epochs after the first (which includes graph tracing)."""
    timed = run["epoch_seconds"][1:] or run["epoch_seconds"]
    return run["images_per_epoch"] / statistics.median(timed)


def max_metric_gap(a: dict, b: dict) -> float:
    return max(
        abs(x - y)
        for key in ("loss", "accuracy", "val_loss", "val_accuracy")
        for x, y in zip(a["history"][key], b["history"][key], strict=True)
    )


def summarize(runs: dict[str, list[dict]]) -> list[str]:
    """The ratios, each from medians over the rounds of this one benchmark run."""

    def median(path: str, measure) -> float:
        return statistics.median(measure(run) for run in runs[path])

    def peak(run: dict) -> float:
        return run["peak_rss_mb"]

    def overhead(run: dict) -> float:
        return run["diagnostics_seconds"] / (sum(run["epoch_seconds"]) - run["diagnostics_seconds"])

    def best(run: dict) -> float:
        """Images/s of the run's fastest epoch after the first: the least disturbed by noise."""
        return run["images_per_epoch"] / min(run["epoch_seconds"][1:] or run["epoch_seconds"])

    lines = []
    for path in ("ours", "ours+diagnostics"):
        typical = median(path, throughput) / median("tutorial", throughput)
        fastest = max(map(best, runs[path])) / max(map(best, runs["tutorial"]))
        lines.append(
            f"throughput ratio {path}/tutorial: {typical:.2f}x (medians), "
            f"{fastest:.2f}x (fastest epoch of each)"
        )
    for path in ("ours", "ours+diagnostics"):
        lines.append(
            f"peak memory ratio {path}/tutorial: "
            f"{median(path, peak) / median('tutorial', peak):.2f}"
        )
    lines.append(
        f"diagnostics' own time, share of the rest of training: "
        f"{median('ours+diagnostics', overhead):.1%}"
    )
    for path in ("ours", "ours+diagnostics"):
        same = round_3(runs[path][0]) == round_3(runs["tutorial"][0])
        lines.append(
            f"{path} vs tutorial per-epoch metrics: largest difference "
            f"{max_metric_gap(runs[path][0], runs['tutorial'][0]):.6f}, "
            f"{'the same' if same else 'NOT the same'} to 3 decimals"
        )
    return lines


def round_3(run: dict) -> dict[str, list[float]]:
    return {
        k: [round(v, 3) for v in run["history"][k]]
        for k in ("loss", "accuracy", "val_loss", "val_accuracy")
    }


def describe_machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=Path("data/raw/cifar-10-python.tar.gz"))
    parser.add_argument("--limit", type=int, default=0, help="training images; 0 = all 50,000")
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two paths")
    parser.add_argument("--child", choices=PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(
            json.dumps(
                measure(
                    args.child, args.archive, args.limit, args.activation, args.epochs, args.seed
                )
            )
        )
        return
    print(f"machine: {describe_machine()}")
    runs: dict[str, list[dict]] = {p: [] for p in PATHS}
    for round_ in range(1, args.rounds + 1):
        for path in PATHS:
            run = run_child(path, args)
            runs[path].append(run)
            print(
                f"round {round_} {path:16s}: {throughput(run):8.0f} images/s, "
                f"epochs {', '.join(f'{s:.1f}' for s in run['epoch_seconds'])} s, "
                f"peak RSS {run['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    for line in summarize(runs):
        print(line)


if __name__ == "__main__":
    sys.exit(run_cli(main))
