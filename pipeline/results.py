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

    @classmethod
    def from_json(cls, block: Mapping[str, Any]) -> Training:
        per_seed = {int(s): e for s, e in block["escape_epoch_per_seed"].items()}
        return cls(
            block["epochs"],
            block["best_val_accuracy"],
            block["best_epoch"],
            block["escape_epoch"],
            per_seed,
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
