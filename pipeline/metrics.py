"""Pure metric functions: arrays in, numbers out. No I/O, no TensorFlow; the counting is
scikit-learn's."""

from __future__ import annotations

import numpy as np

# Keras clips probabilities to [eps, 1 - eps] before the log; so do we, to match its loss.
EPSILON = 1e-7


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, per-class precision/recall/F1 and their macro means, from hard predictions.

    A class never predicted has precision 0 (and one never present, recall 0), as the usual
    zero-division convention has it.
    """
    import sklearn.metrics  # here: 1.5 s to import, and only evaluate needs it

    labels = np.arange(n_classes)
    counts = sklearn.metrics.confusion_matrix(y_true, y_pred, labels=labels)
    precision, recall, f1, _ = sklearn.metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0.0
    )
    return {
        "accuracy": float(np.trace(counts) / max(len(y_true), 1)),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "confusion": counts.tolist(),
    }


def cross_entropy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean categorical cross-entropy of integer labels under predicted probabilities."""
    picked = probabilities[np.arange(len(y_true)), np.asarray(y_true)]
    return float(-np.mean(np.log(np.clip(picked, EPSILON, 1 - EPSILON))))


def majority_share(y_pred: np.ndarray, n_classes: int) -> float:
    """Share of predictions on the most-predicted class (1.0 = the model answers one class)."""
    return float(np.bincount(y_pred, minlength=n_classes).max() / max(len(y_pred), 1))
