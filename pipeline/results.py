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

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.files import write_json
from pipeline.stats import paired_difference, summarize_values

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
        return f"{number.format(self.mean)} ± {self.std:.4f} {self.interval(signed)}"

    def interval(self, signed: bool = False) -> str | None:
        """'[0.6207, 0.6307]', the 95% interval; None for one seed."""
        if self.ci_low is None:
            return None
        number = "{:+.4f}" if signed else "{:.4f}"
        return f"[{number.format(self.ci_low)}, {number.format(self.ci_high)}]"

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        summary = summarize_values(values)
        return cls(summary["mean"], *_parts(summary))

    def fields(self, prefix: str = "") -> dict[str, float | None]:
        """The spread as the results files name it: `<prefix>std`, `_ci_low`, `_ci_high`."""
        values = (self.std, self.ci_low, self.ci_high)
        return {prefix + part: value for part, value in zip(PARTS, values, strict=True)}


PARTS = ("std", "ci_low", "ci_high")


def _parts(block: Mapping[str, Any], prefix: str = "") -> tuple:
    return tuple(block[prefix + part] for part in PARTS)


# The headline numbers of one model on the test set, as evaluate computes them per seed: their
# names, and the metric of metrics.classification_metrics (plus loss and majority share) each is.
HEADLINE = {
    "test_accuracy": "accuracy",
    "test_loss": "loss",
    "macro_precision": "macro_precision",
    "macro_recall": "macro_recall",
    "macro_f1": "macro_f1",
    "majority_share": "majority_share",
}
HEADLINE_KEYS = tuple(HEADLINE)
# Those kept as a plain mean over seeds (the others carry their spread too).
MEAN_KEYS = tuple(key for key in HEADLINE_KEYS if key not in SPREAD_KEYS)


@dataclass(frozen=True)
class MeanTestMetrics:
    """One activation's block of test_metrics.json: its headline numbers' means over seeds, with
    the spread of accuracy and loss."""

    accuracy: Spread
    loss: Spread
    macro_precision: float
    macro_recall: float
    macro_f1: float
    majority_share: float  # share of test predictions on the most-predicted class
    seeds: int

    @classmethod
    def over_seeds(cls, per_seed: Mapping[int, Mapping[str, float]]) -> MeanTestMetrics:
        """The means over seeds of each seed's headline numbers."""

        def values(key: str) -> list[float]:
            return [numbers[key] for numbers in per_seed.values()]

        return cls(
            accuracy=Spread.of(values("test_accuracy")),
            loss=Spread.of(values("test_loss")),
            seeds=len(per_seed),
            **{key: float(np.mean(values(key))) for key in MEAN_KEYS},
        )

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> MeanTestMetrics:
        def spread(key: str) -> Spread:
            return Spread(block[key], *_parts(block, f"{key}_"))

        return cls(
            accuracy=spread("test_accuracy"),
            loss=spread("test_loss"),
            seeds=block["seeds"],
            **{key: block[key] for key in MEAN_KEYS},
        )

    def to_json(self) -> dict[str, Any]:
        block = {"test_accuracy": self.accuracy.mean, "test_loss": self.loss.mean}
        block |= {key: getattr(self, key) for key in MEAN_KEYS}
        spreads = self.accuracy.fields("test_accuracy_") | self.loss.fields("test_loss_")
        return block | spreads | {"seeds": self.seeds}


@dataclass(frozen=True)
class TrainingSummary:
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
    def from_json(cls, block: Mapping[str, Any]) -> TrainingSummary:
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


@dataclass(frozen=True)
class ModelDetails:
    """evaluation.json's models[activation]: the primary seed's test-set numbers in full
    (metrics.classification_metrics, the loss, the majority share), and every seed's headline
    numbers."""

    accuracy: float
    precision: list[float]  # per class
    recall: list[float]
    f1: list[float]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    confusion: list[list[int]]  # rows: true class; columns: predicted
    loss: float
    majority_share: float
    per_seed: dict[int, dict[str, float]]  # seed → HEADLINE_KEYS

    @property
    def accuracy_per_seed(self) -> dict[int, float]:
        return {seed: numbers["test_accuracy"] for seed, numbers in self.per_seed.items()}

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> ModelDetails:
        per_seed = {int(seed): dict(numbers) for seed, numbers in block["per_seed"].items()}
        return cls(**{k: v for k, v in block.items() if k != "per_seed"}, per_seed=per_seed)

    def to_json(self) -> dict[str, Any]:
        block = {k: v for k, v in vars(self).items() if k != "per_seed"}
        return block | {"per_seed": {str(s): dict(n) for s, n in self.per_seed.items()}}


@dataclass(frozen=True)
class Paired:
    """ReLU − sigmoid, paired by seed (evaluation.json's relu_minus_sigmoid[key])."""

    n: int
    difference: Spread

    @classmethod
    def of(cls, relu: Sequence[float], sigmoid: Sequence[float]) -> Paired:
        summary = paired_difference(relu, sigmoid)
        return cls(summary["n"], Spread(summary["mean"], *_parts(summary)))

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> Paired:
        return cls(block["n"], Spread(block["mean"], *_parts(block)))

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.difference.mean} | self.difference.fields()


@dataclass(frozen=True)
class ScoresOnTestSet:
    """What evaluate measured on the test set. Evaluate computes it and writes it
    (test_metrics.json, evaluation.json); the report reads the same object back."""

    class_names: list[str]
    seeds: list[int]  # the primary seed first
    scores: dict[str, MeanTestMetrics]  # per activation: test_metrics.json
    details: dict[str, ModelDetails]  # per activation: evaluation.json's models
    paired: dict[str, Paired]  # per key (SPREAD_KEYS): ReLU − sigmoid by seed

    @property
    def champion(self) -> str:
        """The activation with the best mean test accuracy."""
        return max(self.scores, key=lambda a: self.scores[a].accuracy.mean)

    def write(self, results: Path) -> None:
        write_json(results / "test_metrics.json", {a: s.to_json() for a, s in self.scores.items()})
        evaluation = {
            "class_names": self.class_names,
            "seeds": self.seeds,
            "models": {a: d.to_json() for a, d in self.details.items()},
            "relu_minus_sigmoid": {k: p.to_json() for k, p in self.paired.items()},
        }
        write_json(results / "evaluation.json", evaluation)

    @classmethod
    def read(cls, results: Path) -> ScoresOnTestSet:
        test = json.loads((results / "test_metrics.json").read_text())
        evaluation = json.loads((results / "evaluation.json").read_text())
        return cls(
            class_names=evaluation["class_names"],
            seeds=evaluation["seeds"],
            scores={a: MeanTestMetrics.from_json(block) for a, block in test.items()},
            details={a: ModelDetails.from_json(b) for a, b in evaluation["models"].items()},
            paired={
                k: Paired.from_json(b) for k, b in evaluation.get("relu_minus_sigmoid", {}).items()
            },
        )


@dataclass(frozen=True)
class EvaluationFiles:
    """What the report reads, per activation in the params' order: evaluate's ScoresOnTestSet, and the
    training summaries evaluate wrote beside it."""

    test: dict[str, MeanTestMetrics]
    training: dict[str, TrainingSummary]
    details: dict[str, ModelDetails]
    paired: dict[str, Paired]  # by key: test_accuracy, test_loss
    class_names: list[str]


def read_evaluation(results: Path, activations: Sequence[str]) -> EvaluationFiles:
    """Read evaluate's ScoresOnTestSet and each activation's curves/…/train.json."""
    scored = ScoresOnTestSet.read(results)
    return EvaluationFiles(
        test={a: scored.scores[a] for a in activations},
        training={
            a: TrainingSummary.from_json(
                json.loads((results / "curves" / a / "train.json").read_text())
            )
            for a in activations
        },
        details={a: scored.details[a] for a in activations},
        paired=scored.paired,
        class_names=scored.class_names,
    )


@dataclass(frozen=True)
class RunResults:
    """Everything train and evaluate wrote that the report reads, per activation."""

    histories: dict[str, pd.DataFrame]  # seed-mean epoch, loss, accuracy, val_loss, val_accuracy
    diagnostics: dict[str, pd.DataFrame]  # seed-mean probe measurements from epoch 0 on
    seed_histories: dict[str, pd.DataFrame]  # every seed's history (a `seed` column)
    steps: dict[str, pd.DataFrame]  # seed-mean step curve of the first epochs
    seed_steps: dict[str, pd.DataFrame]  # every seed's step curve
    evaluation: EvaluationFiles  # test scores, training summaries, per-class details, paired gaps
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
