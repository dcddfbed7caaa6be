import math

import pytest

from pipeline.stats import paired_difference, summarize_values


def test_three_values_give_the_known_mean_std_and_t_interval():
    s = summarize_values([1.0, 2.0, 3.0])
    assert s["mean"] == pytest.approx(2.0)
    assert s["std"] == pytest.approx(1.0)
    # t(0.975, df=2) = 4.302653: half-width 4.302653 * 1 / sqrt(3)
    half = 4.302653 / math.sqrt(3)
    assert s["ci_low"] == pytest.approx(2.0 - half, abs=1e-5)
    assert s["ci_high"] == pytest.approx(2.0 + half, abs=1e-5)


def test_one_value_has_no_spread():
    assert summarize_values([0.63]) == {
        "n": 1,
        "mean": 0.63,
        "std": None,
        "ci_low": None,
        "ci_high": None,
    }


def test_paired_difference_uses_pairs():
    # Differences are all exactly 0.1: no spread at all, though each side varies a lot.
    d = paired_difference([0.5, 0.7, 0.9], [0.4, 0.6, 0.8])
    assert d["mean"] == pytest.approx(0.1)
    assert d["std"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0], [1.0, 2.0])
