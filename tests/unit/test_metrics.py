import numpy as np
import pytest

from pipeline.metrics import (
    classification_metrics,
    cross_entropy,
    escape_epoch,
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
    # A zero probability is clipped, not infinite.
    assert np.isfinite(cross_entropy(np.array([1]), np.array([[1.0, 0.0]])))


def test_majority_share():
    assert majority_share(np.array([3, 3, 3, 1]), 10) == pytest.approx(0.75)


def test_escape_epoch_must_exceed_the_threshold():
    assert escape_epoch([0.1, 0.1, 0.1, 0.1, 0.3]) == 5
    assert escape_epoch([0.5]) == 1
    assert escape_epoch([0.1, 0.15]) is None


def test_history_summary_reads_the_last_and_the_best_epoch():
    import pandas as pd

    from pipeline.metrics import summarize_history

    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss": [2.3, 1.9, 1.7],
            "accuracy": [0.1, 0.3, 0.4],
            "val_loss": [2.3, 1.8, 1.9],
            "val_accuracy": [0.1, 0.35, 0.3],
        }
    )
    summary = summarize_history(history)
    assert summary["epochs"] == 3 and summary["val_accuracy"] == pytest.approx(0.3)
    assert summary["best_epoch"] == 2 and summary["best_val_accuracy"] == pytest.approx(0.35)
    assert summary["escape_epoch"] == 2


def test_escape_step_is_the_first_step_above_the_threshold():
    import pandas as pd

    from pipeline.metrics import escape_step

    steps = pd.DataFrame({"step": [0, 32, 64, 96], "val_accuracy": [0.1, 0.15, 0.2, 0.1]})
    assert escape_step(steps) == 64  # 0.15 is not above the threshold
    assert escape_step(steps.assign(val_accuracy=0.1)) is None
