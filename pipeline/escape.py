"""When a model left chance, and how a run's history is summed up: pure functions, no I/O.

Evaluate derives every escape and best epoch from the curves training wrote, so changing a rule
here reruns evaluate and the report, never training.
"""

from __future__ import annotations

from pipeline.cifar import CIFAR10


def escape_threshold(n_classes: int) -> float:
    """Validation accuracy above half again chance counts as having left it: 0.15 for ten
    classes, 0.75 for two."""
    return 1.5 / n_classes


ESCAPE_THRESHOLD = escape_threshold(CIFAR10.n_classes)


def format_escape(value: int | None) -> str:
    """An escape epoch or step as the report and the tables print it."""
    return "never" if value is None else str(value)


def first_escape(values, threshold: float = ESCAPE_THRESHOLD) -> int | None:
    """Index of the first of two consecutive values above `threshold` (the last value may stand
    alone: nothing follows to refute it); None if there is none. One check above chance between
    two at chance is noise, not an escape."""
    above = [value > threshold for value in values]
    for index, is_above in enumerate(above):
        if is_above and (index + 1 == len(above) or above[index + 1]):
            return index
    return None


def escape_epoch(val_accuracy: list[float], threshold: float = ESCAPE_THRESHOLD) -> int | None:
    """The epoch (1-based) at which validation accuracy left chance by `first_escape`'s rule;
    None if it never did."""
    index = first_escape(val_accuracy, threshold)
    return None if index is None else index + 1


def escape_step(steps, threshold: float = ESCAPE_THRESHOLD) -> int | None:
    """The training step at which validation accuracy left chance by `first_escape`'s rule, from
    a step curve (a DataFrame with step and val_accuracy); None if no measured step did."""
    index = first_escape(steps["val_accuracy"].tolist(), threshold)
    return None if index is None else int(steps["step"].iloc[index])


def summarize_history(
    history, threshold: float = ESCAPE_THRESHOLD
) -> dict[str, float | int | None]:
    """A per-epoch history (a DataFrame with epoch, loss, accuracy, val_loss, val_accuracy) →
    its final-epoch numbers, its best validation accuracy and epoch, and its escape epoch."""
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
        "escape_epoch": escape_epoch(history["val_accuracy"].tolist(), threshold),
    }
