"""Results records for the report's and the studies' tests, with made-up numbers."""

from __future__ import annotations

from pipeline.results import ModelDetails


def model_details(accuracy_per_seed: dict[int, float], confusion=()) -> ModelDetails:
    """A model's per-class block: 0.5 for every per-class number, the given test accuracy per
    seed (the first seed's is the model's accuracy)."""
    half = [0.5] * 10
    return ModelDetails(
        accuracy=next(iter(accuracy_per_seed.values())),
        **dict.fromkeys(("precision", "recall", "f1"), half),
        **dict.fromkeys(("macro_precision", "macro_recall", "macro_f1"), 0.5),
        confusion=list(confusion),
        loss=1.5,
        majority_share=0.12,
        per_seed={seed: {"test_accuracy": value} for seed, value in accuracy_per_seed.items()},
    )
