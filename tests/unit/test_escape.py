import pandas as pd
import pytest

from pipeline.escape import (
    ESCAPE_THRESHOLD,
    escape_epoch,
    escape_step,
    escape_threshold,
    first_escape,
    format_escape,
    summarize_history,
)


def test_an_escape_needs_two_checks_in_a_row_above_the_threshold():
    assert first_escape([0.1, 0.2, 0.1, 0.2, 0.3]) == 3  # the lone 0.2 at index 1 is noise
    assert first_escape([0.1, 0.2, 0.25]) == 1
    assert first_escape([0.1, 0.1]) is None


def test_the_last_check_may_stand_alone():
    assert first_escape([0.1, 0.1, 0.3]) == 2


def test_the_threshold_must_be_exceeded_not_reached():
    assert pytest.approx(0.15) == ESCAPE_THRESHOLD
    assert first_escape([0.1, ESCAPE_THRESHOLD, ESCAPE_THRESHOLD]) is None
    assert first_escape([0.1, 0.3, 0.3], threshold=0.5) is None


def test_escape_epoch_is_one_based():
    assert escape_epoch([0.1, 0.1, 0.1, 0.1, 0.3]) == 5
    assert escape_epoch([0.5]) == 1
    assert escape_epoch([0.1, 0.15]) is None


def test_escape_step_reads_the_step_column():
    # The issue's own seed: 0.174 at step 640, then 0.126 and 0.136, then out for good.
    steps = pd.DataFrame(
        {
            "step": [0, 608, 640, 672, 704, 736, 768],
            "val_accuracy": [0.1, 0.1, 0.174, 0.126, 0.136, 0.2, 0.3],
        }
    )
    assert escape_step(steps) == 736
    assert escape_step(steps.assign(val_accuracy=0.1)) is None


def test_format_escape():
    assert format_escape(None) == "never"
    assert format_escape(3) == "3"


def test_history_summary_reads_the_last_and_the_best_epoch():
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


def test_the_threshold_is_half_again_chance_for_any_number_of_classes():
    assert ESCAPE_THRESHOLD == escape_threshold(10) == pytest.approx(0.15)
    assert escape_threshold(2) == pytest.approx(0.75)
    # Two classes at 0.6: above ten classes' threshold, still near two classes' chance.
    assert escape_epoch([0.6, 0.6]) == 1
    assert escape_epoch([0.6, 0.6], escape_threshold(2)) is None
