"""The contract between evaluate and report: what evaluate's files hold, as typed records.

The files keep their layout (`dvc metrics show` and `dvc plots` read them as they are); only this
module knows their key names. A record's fields are its file's keys in the file's order, and
pydantic reads and writes them. No TensorFlow here: the report stage imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pipeline.errors import PipelineError
from pipeline.files import write_json
from pipeline.stats import paired_difference, summarize_values

# Numbers whose spread over seeds test_metrics.json carries (`<key>_std`, `_ci_low`, `_ci_high`).
SPREAD_KEYS = ("test_accuracy", "test_loss")
PARTS = ("std", "ci_low", "ci_high")


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
# Those kept as a plain mean over seeds (the others carry their spread too).
MEAN_KEYS = tuple(key for key in HEADLINE if key not in SPREAD_KEYS)


class Record(BaseModel):
    """A block of a results file: its fields are the file's keys, in the file's order."""

    model_config = ConfigDict(frozen=True)

    def write(self, path: Path) -> None:
        write_json(path, self.model_dump(mode="json"))


class MeanTestMetrics(Record):
    """One activation's block of test_metrics.json: its headline numbers' means over seeds, with
    the spread of accuracy and loss."""

    test_accuracy: float
    test_loss: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    majority_share: float  # share of test predictions on the most-predicted class
    test_accuracy_std: float | None
    test_accuracy_ci_low: float | None
    test_accuracy_ci_high: float | None
    test_loss_std: float | None
    test_loss_ci_low: float | None
    test_loss_ci_high: float | None
    seeds: int

    @classmethod
    def over_seeds(cls, per_seed: Mapping[int, Mapping[str, float]]) -> MeanTestMetrics:
        """The means over seeds of each seed's headline numbers."""

        def values(key: str) -> list[float]:
            return [numbers[key] for numbers in per_seed.values()]

        blocks = {key: float(np.mean(values(key))) for key in MEAN_KEYS}
        for key in SPREAD_KEYS:
            summary = summarize_values(values(key))
            blocks |= {key: summary["mean"]} | {f"{key}_{p}": summary[p] for p in PARTS}
        return cls(**blocks, seeds=len(per_seed))

    def _spread(self, key: str) -> Spread:
        return Spread(getattr(self, key), *(getattr(self, f"{key}_{p}") for p in PARTS))

    @property
    def accuracy(self) -> Spread:
        return self._spread("test_accuracy")

    @property
    def loss(self) -> Spread:
        return self._spread("test_loss")


class TrainingSummary(Record):
    """results/curves/<activation>/train.json: the seed-mean curve's summary, as evaluate wrote
    it from what each train stage wrote."""

    # The seed-mean curve's last epoch and its numbers there, its best epoch, its escape epoch.
    epochs: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    best_val_accuracy: float
    best_epoch: int
    escape_epoch: int | None
    escape_epoch_per_seed: dict[int, int | None]
    # First step above the threshold on the step-by-step curve of the first epochs, per seed.
    # Studies trained before the step curve existed have none of these three.
    escape_step_per_seed: dict[int, int | None] = {}
    steps_per_epoch: int | None = None
    step_curve_images: int | None = None  # validation images the step curve is measured on
    seeds: int
    parameters: int
    train_seconds: float  # summed over seeds
    diagnostics_seconds: float


class ModelDetails(Record):
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
    per_seed: dict[int, dict[str, float]]  # seed → HEADLINE's keys

    @property
    def accuracy_per_seed(self) -> dict[int, float]:
        return {seed: numbers["test_accuracy"] for seed, numbers in self.per_seed.items()}


class Paired(Record):
    """ReLU − sigmoid, paired by seed (evaluation.json's relu_minus_sigmoid[key])."""

    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def of(cls, relu: Sequence[float], sigmoid: Sequence[float]) -> Paired:
        return cls(**paired_difference(relu, sigmoid))

    @property
    def difference(self) -> Spread:
        return Spread(self.mean, self.std, self.ci_low, self.ci_high)


# test_metrics.json: one block per activation.
TEST_METRICS = TypeAdapter(dict[str, MeanTestMetrics])


class ScoresOnTestSet(BaseModel):
    """What evaluate measured on the test set: test_metrics.json (`scores`) and evaluation.json
    (the rest, under that file's key names). Evaluate computes it and writes it; the report reads
    the same object back."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    class_names: list[str]
    seeds: list[int]  # the primary seed first
    scores: dict[str, MeanTestMetrics] = Field(exclude=True)  # per activation
    details: dict[str, ModelDetails] = Field(alias="models")  # per activation
    # Per key (SPREAD_KEYS): ReLU − sigmoid by seed.
    paired: dict[str, Paired] = Field({}, alias="relu_minus_sigmoid")

    @property
    def champion(self) -> str:
        """The activation with the best mean test accuracy."""
        return max(self.scores, key=lambda a: self.scores[a].accuracy.mean)

    def write(self, results: Path) -> None:
        write_json(
            results / "test_metrics.json", TEST_METRICS.dump_python(self.scores, mode="json")
        )
        write_json(results / "evaluation.json", self.model_dump(mode="json", by_alias=True))

    @classmethod
    def read(cls, results: Path) -> ScoresOnTestSet:
        scores = TEST_METRICS.validate_json((results / "test_metrics.json").read_bytes())
        evaluation = json.loads((results / "evaluation.json").read_text())
        return cls.model_validate(evaluation | {"scores": scores})


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
            a: TrainingSummary.model_validate_json(
                (results / "curves" / a / "train.json").read_bytes()
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
