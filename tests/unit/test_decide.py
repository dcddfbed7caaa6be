import pytest

from pipeline.decide import (
    MIXED,
    NOT_SETTLED,
    NOT_SUPPORTED,
    SUPPORTED,
    Measure,
    bonferroni,
    combine,
    decimals,
    paired,
    rule,
    seeds_for_count,
    split_outcome,
)

ACCURACY = Measure("test accuracy", smallest_effect=0.01, scale=100, unit="points")
SEEDS = (42, 43, 44, 45, 46)


def arms(higher, lower):
    return dict(zip(SEEDS, higher, strict=False)), dict(zip(SEEDS, lower, strict=False))


def test_each_verdict_follows_the_interval_against_the_smallest_effect():
    clear = paired("a − b", ACCURACY, *arms([0.60, 0.61, 0.62, 0.61, 0.60], [0.45] * 5))
    assert clear.verdict == SUPPORTED
    # The same numbers the other way round: the interval lies below the smallest effect.
    assert (
        paired(
            "b − a", ACCURACY, *reversed(arms([0.60, 0.61, 0.62, 0.61, 0.60], [0.45] * 5))
        ).verdict
        == NOT_SUPPORTED
    )
    # An effect that is real but smaller than the one that matters is not support either.
    tiny = paired("a − b", ACCURACY, *arms([0.453, 0.454, 0.455, 0.454, 0.453], [0.45] * 5))
    assert tiny.interval[0] > 0 and tiny.verdict == NOT_SUPPORTED
    # Seeds that disagree: the interval straddles the smallest effect.
    noisy = paired("a − b", ACCURACY, *arms([0.70, 0.40, 0.55, 0.30, 0.62], [0.45] * 5))
    assert noisy.verdict == MIXED
    few = paired("a − b", ACCURACY, *arms([0.60, 0.61, 0.62], [0.45] * 3))
    assert few.n == 3 and few.verdict == NOT_SETTLED


def test_a_stricter_error_level_widens_the_interval_and_asks_more_seeds_of_a_count():
    # Mean +3 points, t-interval about [+1.2, +4.8] at 95%: supported alone; at a level of
    # 0.05 / 25 the interval reaches below 1 point, so the verdict becomes mixed.
    modest = paired("a − b", ACCURACY, *arms([0.47, 0.49, 0.48, 0.465, 0.495], [0.45] * 5))
    assert modest.verdict == SUPPORTED
    assert modest.verdict_at(0.05) == SUPPORTED
    assert modest.verdict_at(bonferroni(25)) == MIXED
    # A large, steady effect stays supported at the stricter level.
    clear = paired("a − b", ACCURACY, *arms([0.60, 0.61, 0.62, 0.61, 0.60], [0.45] * 5))
    assert clear.verdict_at(bonferroni(25)) == SUPPORTED
    # Five unanimous seeds: p = 1/32 by a sign test, enough for 5% but not for 0.2%.
    counted = paired("a − b", ACCURACY, *arms([0.6] * 5, [0.1, 0.45, 0.1, 0.45, 0.45]), split=True)
    assert counted.verdict == SUPPORTED and counted.verdict_at(0.05) == SUPPORTED
    assert counted.verdict_at(bonferroni(25)) == NOT_SETTLED
    assert seeds_for_count(bonferroni(25)) == 9 and 0.5**9 <= bonferroni(25) < 0.5**8
    assert seeds_for_count(0.05) == 5


def test_only_seeds_both_arms_have_are_paired():
    comparison = paired("a − b", ACCURACY, {42: 0.6, 43: 0.7, 44: 0.5}, {43: 0.5, 44: 0.5, 99: 0.1})
    assert comparison.differences == pytest.approx({43: 0.2, 44: 0.0})


def test_a_ratio_is_compared_on_a_log_scale_against_its_smallest_factor():
    speed = Measure("time", smallest_effect=0.10, unit="×", log=True)
    twice = paired("a / b", speed, *arms([2.0, 2.1, 1.9, 2.0, 2.05], [1.0] * 5))
    assert twice.mean == pytest.approx(1.0, abs=0.05) and twice.verdict == SUPPORTED
    same = paired("a / b", speed, *arms([1.01, 0.99, 1.02, 1.0, 1.0], [1.0] * 5))
    assert same.verdict == NOT_SUPPORTED
    assert twice.format() == "2.01× [1.92×, 2.10×] (5 seeds)"


def test_rule_boundaries():
    assert rule(5, (0.02, 0.05), 0.01) == SUPPORTED
    assert rule(5, (-0.05, 0.005), 0.01) == NOT_SUPPORTED
    assert rule(5, (0.0, 0.05), 0.01) == MIXED
    assert rule(4, (0.02, 0.05), 0.01) == NOT_SETTLED


def test_combine():
    assert combine([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert combine([NOT_SUPPORTED, NOT_SUPPORTED]) == NOT_SUPPORTED
    assert combine([SUPPORTED, NOT_SUPPORTED]) == MIXED
    assert combine([SUPPORTED, MIXED]) == MIXED
    assert combine([SUPPORTED, NOT_SETTLED]) == NOT_SETTLED
    assert combine([]) == NOT_SETTLED


def test_intervals_print_to_the_precision_they_support():
    wide = paired("a − b", ACCURACY, *arms([0.70, 0.40, 0.55, 0.30, 0.62], [0.45] * 5))
    low, high = wide.interval
    assert decimals(wide.mean, low, high, ACCURACY) == 0  # ± about 20 points: whole points
    assert wide.format().count(".") == 0
    narrow = paired("a − b", ACCURACY, *arms([0.601, 0.603, 0.602, 0.604, 0.600], [0.45] * 5))
    assert decimals(narrow.mean, *narrow.interval, ACCURACY) == 1
    assert narrow.format() == "+15.2 [+15.0, +15.4] points (5 seeds)"


def test_split_outcomes_are_counts_and_medians():
    stuck = {42: True, 43: False, 44: False, 45: True, 46: False}
    values = {42: 0.10, 43: 0.40, 44: 0.44, 45: 0.10, 46: 0.30}
    text = split_outcome(values, stuck, lambda v: f"{v:.2f}")
    assert text == "2 of 5 seeds stuck at chance; the other 3: median 0.40"
    assert split_outcome(values, dict.fromkeys(values, True), str) == "all 5 seeds stuck at chance"
    none = split_outcome(values, {}, lambda v: f"{v:.2f}")
    assert none == "median 0.30 (range 0.10 to 0.44, 5 seeds)"
    in_points = split_outcome(values, {}, lambda v: f"{v:.2f}", " points")
    assert in_points == "median 0.30 points (range 0.10 to 0.44, 5 seeds)"


def test_direction_reads_the_rule_both_ways():
    from pipeline.decide import EQUAL, HIGHER, LOWER, UNCLEAR, UNSETTLED, direction

    assert direction(paired("", ACCURACY, *arms([0.60] * 3 + [0.61] * 2, [0.45] * 5))) == HIGHER
    assert direction(paired("", ACCURACY, *arms([0.45] * 5, [0.60] * 3 + [0.61] * 2))) == LOWER
    assert (
        direction(paired("", ACCURACY, *arms([0.451, 0.452, 0.449, 0.45, 0.451], [0.45] * 5)))
        == EQUAL
    )
    assert (
        direction(paired("", ACCURACY, *arms([0.70, 0.40, 0.55, 0.30, 0.62], [0.45] * 5)))
        == UNCLEAR
    )
    assert direction(paired("", ACCURACY, *arms([0.6] * 2, [0.45] * 2))) == UNSETTLED


def test_seeds_that_split_are_judged_by_counting_them():
    from pipeline.decide import factor

    # One frozen seed makes the t-interval useless; counting is not thrown by it.
    outlier = [0.60, 0.61, 0.62, 0.61, 0.95]
    assert paired("", ACCURACY, *arms(outlier, [0.45] * 5)).verdict == SUPPORTED
    ratio = Measure("gradient", smallest_effect=1.0, unit="×", log=True)
    wild = paired("", ratio, *arms([6.4, 8.0, 12.0, 9.0, 3e8], [1.0] * 5))
    assert wild.verdict == MIXED  # the t-interval on logs spans both sides of 2×
    counted = paired("", ratio, *arms([6.4, 8.0, 12.0, 9.0, 3e8], [1.0] * 5), split=True)
    assert counted.verdict == SUPPORTED and counted.beyond == 5
    assert counted.format() == "median 9.0×, 5 of 5 seeds above a factor of 2.00"
    one_short = paired("", ratio, *arms([6.4, 1.5, 12.0, 9.0, 3e8], [1.0] * 5), split=True)
    assert one_short.verdict == MIXED
    assert (
        paired("", ratio, *arms([1.2, 1.5, 0.5, 1.0, 1.9], [1.0] * 5), split=True).verdict
        == NOT_SUPPORTED
    )
    assert factor(5_494_744) == "5,500,000×" and factor(0.077) == "0.077×"
    steps = Measure("steps to leave chance", smallest_effect=704, unit="steps")
    late = paired("", steps, *arms([3520, 3520, 2816, 6336, 7040], [32] * 5), split=True)
    assert late.format().startswith("median +3,488 steps, 5 of 5 seeds above 704 steps")
    points = paired("", ACCURACY, *arms(outlier, [0.45] * 5), split=True)
    assert points.format().startswith("median +16.0 points, 5 of 5")


def test_negative_differences_print_with_a_minus_sign():
    worse = paired("", ACCURACY, *arms([0.30, 0.31, 0.32, 0.31, 0.30], [0.45] * 5))
    assert worse.format().startswith("−14")


def test_an_interval_ending_near_the_smallest_effect_shows_which_side():
    from pipeline.decide import Comparison

    near = Comparison("", ACCURACY, dict(zip(SEEDS, [-0.0235] * 5, strict=True)))
    # Its interval, as claim 2's data gave it: −2.35 [−3.72, −0.97] points.
    assert near.ends_on_threshold(-0.0372, -0.0097, 0) and near.ends_on_threshold(
        -0.0372, -0.0097, 1
    )
    assert not near.ends_on_threshold(-0.0372, -0.0097, 2)
    wide = paired("", ACCURACY, *arms([0.60, 0.40, 0.55, 0.30, 0.62], [0.45] * 5))
    assert "." not in wide.format()  # ends far from ±1 point: whole points, as supported
    near_one = Comparison(
        "", ACCURACY, dict(zip(SEEDS, [-0.008, -0.02, -0.04, -0.03, -0.0175], strict=True))
    )
    # Its interval's half-width alone supports whole points, "−2 [−4, −1]": but −0.79 is not −1.
    assert near_one.format() == "−2.3 [−3.8, −0.8] points (5 seeds)"


def test_an_interval_ending_near_zero_shows_which_side():
    from pipeline.decide import Comparison

    # ReLU's own change with depth, as the study gave it: whole points would print "−0".
    drop = Comparison(
        "", ACCURACY, dict(zip(SEEDS, [-0.023, -0.020, -0.013, -0.053, -0.014], strict=True))
    )
    low, high = drop.interval
    assert round(high * 100) == 0 and high < 0
    assert drop.ends_unclear(low, high, 0) and not drop.ends_unclear(low, high, 1)
    assert "−0]" not in drop.format() and "+0]" not in drop.format()
    assert drop.format().startswith("−2.5 [−4.")


def test_seeds_that_agree_exactly_are_said_to_agree_not_given_a_zero_width_interval():
    steps = Measure("steps", 704.0, unit="steps")
    same = paired("", steps, *arms([7040.0] * 5, [32.0] * 5))
    assert same.format() == "+7,008 steps on every seed (5 seeds)"
    assert same.verdict == SUPPORTED
