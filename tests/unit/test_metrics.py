import numpy as np
import pytest

from pipeline.metrics import (
    classification_metrics,
    cross_entropy,
    majority_share,
)


def test_confusion_counts_pairs_and_keeps_classes_never_seen():
    counts = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 4)["confusion"]
    assert counts == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]


def test_known_precision_recall_f1():
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["precision"] == pytest.approx([1.0, 1 / 3, 0.0])
    assert m["recall"] == pytest.approx([0.5, 1.0, 0.0])
    assert m["f1"] == pytest.approx([2 / 3, 0.5, 0.0])
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 3)


def test_cross_entropy_matches_hand_computation():
    probs = np.array([[0.5, 0.5], [0.9, 0.1]])
    assert cross_entropy(np.array([0, 1]), probs) == pytest.approx(-(np.log(0.5) + np.log(0.1)) / 2)
    # A zero probability is clipped to Keras' epsilon, 1e-7, not infinite.
    assert cross_entropy(np.array([1]), np.array([[1.0, 0.0]])) == pytest.approx(-np.log(1e-7))


def test_majority_share():
    assert majority_share(np.array([3, 3, 3, 1]), 10) == pytest.approx(0.75)
