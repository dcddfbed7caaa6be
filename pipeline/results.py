"""The contract between evaluate and report: what evaluate's files hold, as typed records.

The files keep their layout (`dvc metrics show` and `dvc plots` read them as they are); only this
module knows their key names. No TensorFlow here: the report stage imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import PipelineError

# Numbers whose spread over seeds test_metrics.json carries (`<key>_std`, `_ci_low`, `_ci_high`).
SPREAD_KEYS = ("test_accuracy", "test_loss")


@dataclass(frozen=True)
class Spread:
    """A mean over seeds with its sample std and 95% t-interval (None with one seed)."""

    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None

    def format(self, signed: bool = False) -> str:
        """'0.6257' for one seed; '0.6257 ± 0.0040 [0.6207, 0.6307]' for several."""
        number = "{:+.4f}" if signed else "{:.4f}"
        if self.std is None:
            return number.format(self.mean)
        return (
            f"{number.format(self.mean)} ± {self.std:.4f} "
            f"[{number.format(self.ci_low)}, {number.format(self.ci_high)}]"
        )


def spread_fields(key: str, summary: Mapping[str, Any]) -> dict[str, float | None]:
    """test_metrics.json's spread keys for `key`, from a stats.summarize_values() result."""
    return {f"{key}_{part}": summary[part] for part in ("std", "ci_low", "ci_high")}


@dataclass(frozen=True)
class Scores:
    """One activation's block of test_metrics.json: means over its seeds."""

    accuracy: Spread
    loss: Spread
    majority_share: float  # share of test predictions on the most-predicted class
    seeds: int

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> Scores:
        def spread(key: str) -> Spread:
            parts = (block[f"{key}_{p}"] for p in ("std", "ci_low", "ci_high"))
            return Spread(block[key], *parts)

        return cls(
            spread("test_accuracy"), spread("test_loss"), block["majority_share"], block["seeds"]
        )


@dataclass(frozen=True)
class Training:
    """results/curves/<activation>/train.json: the seed-mean curve's summary, as evaluate wrote
    it from what each train stage wrote."""

    epochs: int
    best_val_accuracy: float
    best_epoch: int
    escape_epoch: int | None  # of the seed-mean curve
    escape_epoch_per_seed: dict[int, int | None]
    # First step above the threshold on the step-by-step curve of the first epochs, per seed.
    escape_step_per_seed: dict[int, int | None]
    steps_per_epoch: int | None
    step_curve_images: int | None  # validation images the step curve is measured on

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> Training:
        def per_seed(key: str) -> dict[int, int | None]:
            # Studies trained before the step curve existed have no escape steps.
            return {int(s): e for s, e in block.get(key, {}).items()}

        return cls(
            block["epochs"],
            block["best_val_accuracy"],
            block["best_epoch"],
            block["escape_epoch"],
            per_seed("escape_epoch_per_seed"),
            per_seed("escape_step_per_seed"),
            block.get("steps_per_epoch"),
            block.get("step_curve_images"),
        )


def per_seed_block(scores: Mapping[int, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """evaluation.json's `per_seed`: JSON keys are strings."""
    return {str(seed): dict(numbers) for seed, numbers in scores.items()}


@dataclass(frozen=True)
class ModelDetails:
    """evaluation.json's models[activation]: the primary seed's per-class numbers, and every
    seed's test accuracy."""

    f1: list[float]
    confusion: list[list[int]]
    accuracy_per_seed: dict[int, float]

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> ModelDetails:
        per_seed = {int(s): d["test_accuracy"] for s, d in block["per_seed"].items()}
        return cls(block["f1"], block["confusion"], per_seed)


@dataclass(frozen=True)
class Paired:
    """ReLU − sigmoid, paired by seed (evaluation.json's relu_minus_sigmoid[key])."""

    n: int
    difference: Spread

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> Paired:
        parts = (block[p] for p in ("mean", "std", "ci_low", "ci_high"))
        return cls(block["n"], Spread(*parts))


@dataclass(frozen=True)
class Evaluation:
    """Everything evaluate wrote for the report, per activation in the params' order."""

    test: dict[str, Scores]
    training: dict[str, Training]
    details: dict[str, ModelDetails]
    paired: dict[str, Paired]  # by key: test_accuracy, test_loss
    class_names: list[str]


def read_evaluation(results: Path, activations: Sequence[str]) -> Evaluation:
    """Read test_metrics.json, evaluation.json and each activation's curves/…/train.json."""
    test = json.loads((results / "test_metrics.json").read_text())
    evaluation = json.loads((results / "evaluation.json").read_text())
    return Evaluation(
        test={a: Scores.from_json(test[a]) for a in activations},
        training={
            a: Training.from_json(json.loads((results / "curves" / a / "train.json").read_text()))
            for a in activations
        },
        details={a: ModelDetails.from_json(evaluation["models"][a]) for a in activations},
        paired={
            k: Paired.from_json(v) for k, v in evaluation.get("relu_minus_sigmoid", {}).items()
        },
        class_names=evaluation["class_names"],
    )


@dataclass(frozen=True)
class RunResults:
    """Everything train and evaluate wrote that the report reads, per activation."""

    histories: dict[str, pd.DataFrame]  # seed-mean epoch, loss, accuracy, val_loss, val_accuracy
    diagnostics: dict[str, pd.DataFrame]  # seed-mean probe measurements from epoch 0 on
    seed_histories: dict[str, pd.DataFrame]  # every seed's history (a `seed` column)
    steps: dict[str, pd.DataFrame]  # seed-mean step curve of the first epochs
    seed_steps: dict[str, pd.DataFrame]  # every seed's step curve
    evaluation: Evaluation  # test scores, training summaries, per-class details, paired gaps
    examples: pd.DataFrame  # fixed test images with each model's prediction
    validation_source: str  # "train" (held-out split) or "test" (the tutorial's way)


def read_results(results: Path, data: Path, activations: Sequence[str]) -> RunResults:
    """Load what the train and evaluate stages wrote."""
    curves = results / "curves"

    def each(name: str) -> dict[str, pd.DataFrame]:
        return {a: pd.read_csv(curves / a / name) for a in activations}

    try:
        meta = json.loads((data / "meta.json").read_text())
        return RunResults(
            histories=each("history.csv"),
            diagnostics=each("diagnostics.csv"),
            seed_histories=each("history_seeds.csv"),
            steps=each("steps.csv"),
            seed_steps=each("steps_seeds.csv"),
            evaluation=read_evaluation(results, activations),
            examples=pd.read_csv(results / "examples.csv"),
            validation_source=meta["validation_source"],
        )
    except FileNotFoundError as exc:
        raise PipelineError(f"{exc.filename} not found; run `dvc repro` to produce it") from None
