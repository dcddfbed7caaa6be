"""One decision rule for every claim, and the way its numbers are printed. Pure functions.

A claim is tested by one or more comparisons. A comparison pairs two arms seed by seed (the same
seed gives both the same data order and, where the shapes and the initialiser agree, the same
initial draw) and looks at the differences, signed so that the claim predicts them to be positive.
Its verdict:

- *supported*: the whole 95% t-interval of the mean difference lies above the smallest effect that
  matters;
- *not supported*: the whole interval lies below it (no effect that matters in the claimed
  direction, or one in the other);
- *mixed*: the interval holds values on both sides of it;
- *not settled (too few seeds)*: fewer than MIN_SEEDS pairs.

When the seeds of either arm split (some stuck at chance for the whole run, some not), a mean
and its t-interval describe no run, and one stuck seed can stretch the interval over anything.
Such a comparison counts seeds instead: supported when every seed's difference lies above the
smallest effect (with five seeds, a one-sided sign test's p = 1/32), not supported when every
seed's lies below it, mixed otherwise; it is printed as its median and that count.

A claim made of several comparisons is supported (or not supported) when all of them are; mixed
when they disagree or any is mixed; not settled when any is. A claim whose arms are not in the
study yet is *not run yet*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.stats import summarize_values

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
MIXED = "mixed"
NOT_SETTLED = "not settled (too few seeds)"
NOT_RUN = "not run yet"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, MIXED, NOT_SETTLED)
MIN_SEEDS = 5
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Measure:
    """A quantity a comparison is made on, how it prints, and the smallest effect that matters."""

    name: str  # "test accuracy"
    smallest_effect: float  # in the measure's own units
    scale: float = 1.0  # printed value = value × scale (100: a share printed in points)
    unit: str = ""  # printed after the number ("points", "steps", "×")
    log: bool = False  # a ratio: compared as log2, printed as a factor

    def smallest_text(self) -> str:
        """The smallest effect that matters, as the report states it."""
        if self.log:
            return f"a factor of {1 + self.smallest_effect:.2f}"
        value = self.smallest_effect * self.scale
        unit = self.unit[:-1] if self.unit.endswith("s") and value == 1 else self.unit
        return f"{value:g} {unit}".rstrip()


@dataclass(frozen=True)
class Comparison:
    """`higher` against `lower` on `measure`, paired by seed; the claim says higher wins."""

    label: str  # what is compared, e.g. "ReLU − sigmoid"
    measure: Measure
    differences: Mapping[int, float]  # seed → higher − lower (log2 ratio for a log measure)
    split: bool = False  # an arm's seeds split between stuck at chance and learned: count them

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return float(np.mean(list(self.differences.values())))

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% t-interval of the mean difference; None with fewer than two pairs."""
        return self.interval_at(CONFIDENCE)

    def interval_at(self, confidence: float) -> tuple[float, float] | None:
        if self.n < 2:
            return None
        summary = summarize_values(list(self.differences.values()), confidence)
        return summary["ci_low"], summary["ci_high"]

    @property
    def threshold(self) -> float:
        m = self.measure
        return math.log2(1 + m.smallest_effect) if m.log else m.smallest_effect

    @property
    def beyond(self) -> int:
        """How many seeds' differences lie above the smallest effect that matters."""
        return sum(d > self.threshold for d in self.differences.values())

    @property
    def verdict(self) -> str:
        if self.split:
            return count_rule(self.n, self.beyond, self.threshold, self.differences.values())
        return rule(self.n, self.interval, self.threshold)

    def verdict_at(self, level: float) -> str:
        """The verdict when this comparison may err with probability `level` rather than 5%:
        its t-interval at 1 − `level`; for seeds that split, the count's one-sided sign test
        (every seed beyond the line: p = 1/2^n) must reach `level`, or it is not settled."""
        if not self.split:
            return rule(self.n, self.interval_at(1 - level), self.threshold)
        verdict = self.verdict
        if verdict in (SUPPORTED, NOT_SUPPORTED) and 0.5**self.n > level:
            return NOT_SETTLED
        return verdict

    def per_seed(self) -> str:
        """Each seed's difference, in the measure's units: '42: 2.1×, 43: 0.80×, …'."""
        return ", ".join(
            f"{seed}: {show(d, self.measure, 1 if self.measure.log else 0)}"
            for seed, d in sorted(self.differences.items())
        )

    def digits(self) -> int:
        """Decimals for a median: one digit below the smallest effect's first (1 point: one
        decimal; 704 steps: none)."""
        if self.measure.log:
            return 1
        smallest = self.measure.smallest_effect * self.measure.scale
        return max(0, 1 - math.floor(math.log10(smallest)))

    def ends_on_threshold(self, low: float, high: float, digits: int) -> bool:
        """Whether an interval end printed to `digits` decimals is within one printed unit of
        the smallest effect (either sign)."""
        scale, unit = self.measure.scale, 10.0**-digits
        edge = self.threshold * scale
        return any(abs(abs(round(end * scale, digits)) - edge) < unit for end in (low, high))

    def ends_unclear(self, low: float, high: float, digits: int) -> bool:
        """Whether an interval end, printed to `digits` decimals, would hide which side of the
        smallest effect or of zero it lies on (a "−0" or "+0")."""
        scale = self.measure.scale
        zero = any(end != 0 and round(end * scale, digits) == 0 for end in (low, high))
        return zero or self.ends_on_threshold(low, high, digits)

    def format(self) -> str:
        """'+16 [+12, +20] points (5 seeds)': mean and interval to the precision they support;
        for seeds that split, 'median +16 points, 5 of 5 seeds above 1 point'."""
        unit = f" {self.measure.unit}" if self.measure.unit and not self.measure.log else ""
        if self.split:
            median = show(
                float(np.median(list(self.differences.values()))), self.measure, self.digits()
            )
            # No "(split)" note: the rule, stated once in the report, says what this form means.
            return (
                f"median {median}{unit}, {self.beyond} of {self.n} seeds above "
                f"{self.measure.smallest_text()}"
            )
        if self.interval is None:
            return f"{show(self.mean, self.measure)}{unit} ({self.n} seed{'s' * (self.n != 1)})"
        low, high = self.interval
        if low == high:  # every seed's difference the same: no spread to show
            value = self.mean * (1 if self.measure.log else self.measure.scale)
            digits = 0 if round(float(value), 9).is_integer() else 2
            return f"{show(self.mean, self.measure, digits)}{unit} on every seed ({self.n} seeds)"
        digits = decimals(self.mean, low, high, self.measure)
        # One more decimal while an end, rounded, would sit on the smallest effect: the reader
        # must see which side of it the interval ends.
        while not self.measure.log and digits < 3 and self.ends_unclear(low, high, digits):
            digits += 1
        mean, low, high = (show(v, self.measure, digits) for v in (self.mean, low, high))
        return f"{mean} [{low}, {high}]{unit} ({self.n} seeds)"


def rule(n: int, interval: tuple[float, float] | None, threshold: float) -> str:
    """The decision rule itself (module docstring)."""
    if n < MIN_SEEDS or interval is None:
        return NOT_SETTLED
    low, high = interval
    if low > threshold:
        return SUPPORTED
    if high < threshold:
        return NOT_SUPPORTED
    return MIXED


def count_rule(n: int, beyond: int, threshold: float, differences) -> str:
    """The decision rule for seeds that split (module docstring)."""
    if n < MIN_SEEDS:
        return NOT_SETTLED
    if beyond == n:
        return SUPPORTED
    if all(d < threshold for d in differences):
        return NOT_SUPPORTED
    return MIXED


def bonferroni(count: int) -> float:
    """The error level per comparison that holds `count` comparisons to 5% together."""
    return (1 - CONFIDENCE) / count


def seeds_for_count(level: float) -> int:
    """The fewest seeds whose unanimous count reaches `level` by a one-sided sign test."""
    return math.ceil(math.log2(1 / level))


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim tested by several comparisons."""
    if not verdicts or NOT_SETTLED in verdicts:
        return NOT_SETTLED
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if all(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    return MIXED


def seeds_split(*stuck: Mapping[int, bool]) -> bool:
    """Whether any arm's seeds (seed → stuck at chance for the whole run) split between stuck
    and learned: the case a comparison counts seeds for."""
    return any(0 < sum(arm.values()) < len(arm) for arm in stuck)


def paired(
    label: str,
    measure: Measure,
    higher: Mapping[int, float],
    lower: Mapping[int, float],
    split: bool = False,
) -> Comparison:
    """The comparison of two arms' per-seed values over the seeds both have; `split` when
    either arm's seeds split between stuck at chance and learned."""
    seeds = sorted(set(higher) & set(lower))
    if measure.log:
        diffs = {s: math.log2(higher[s] / lower[s]) for s in seeds}
    else:
        diffs = {s: higher[s] - lower[s] for s in seeds}
    return Comparison(label, measure, diffs, split)


def decimals(mean: float, low: float, high: float, measure: Measure) -> int:
    """Decimals that the interval supports: its half-width's first significant digit, three at
    most (seeds that agree to rounding error support no more)."""
    half = (2**high - 2**low) / 2 if measure.log else (high - low) / 2 * measure.scale
    if half <= 0 or not math.isfinite(half):
        return 2
    return min(3, max(0, -math.floor(math.log10(half))))


def show(value: float, measure: Measure, digits: int = 2) -> str:
    """One number of a comparison, scaled and signed (a log measure as a factor, unsigned)."""
    if measure.log:
        return factor(2**value, digits)
    return f"{value * measure.scale:+,.{digits}f}".replace("-", "−")


def factor(value: float, digits: int = 2) -> str:
    """A ratio as a factor: `digits` decimals, but two significant digits at least below 1 and
    none past 100 (a factor of thousands needs no decimals)."""
    if value >= 10_000:  # digits past the second mean nothing at this size
        return f"{float(f'{value:.2g}'):,.0f}×"
    if value >= 100:
        return f"{value:,.0f}×"
    if 0 < value < 1:
        digits = max(digits, 1 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}×"


def split_outcome(
    values: Mapping[int, float], stuck: Mapping[int, bool], fmt: str, unit: str = ""
) -> str:
    """An arm whose seeds split (some stuck at chance, some not) as counts and medians, never a
    mean; an arm that did not split as its median and range. `fmt` formats one value; `unit`
    follows the median only (the range's ends share it)."""
    n = len(values)
    stuck_seeds = [s for s in values if stuck.get(s)]
    left = [values[s] for s in values if not stuck.get(s)]
    if not left:
        return f"all {n} seeds stuck at chance"
    median = fmt(float(np.median(left))) + unit
    if stuck_seeds:
        return f"{len(stuck_seeds)} of {n} seeds stuck at chance; the other {len(left)}: median {median}"
    low, high = fmt(min(left)), fmt(max(left))
    if low == high:
        return f"{low}{unit} on every seed ({n})"
    return f"median {median} (range {low} to {high}, {n} seeds)"


HIGHER, LOWER, EQUAL, UNCLEAR, UNSETTLED = "higher", "lower", "equal", "unclear", "unsettled"


def direction(comparison: Comparison) -> str:
    """The same rule read both ways, for advice: HIGHER when the interval (for seeds that split:
    every seed's difference) lies above the smallest effect, LOWER when it lies below its
    negative, EQUAL when it lies between the two, UNCLEAR when it reaches past either,
    UNSETTLED with too few seeds."""
    if comparison.verdict == NOT_SETTLED:
        return UNSETTLED
    if comparison.split:
        low, high = min(comparison.differences.values()), max(comparison.differences.values())
    else:
        low, high = comparison.interval
    threshold = comparison.threshold
    if low > threshold:
        return HIGHER
    if high < -threshold:
        return LOWER
    if -threshold < low and high < threshold:
        return EQUAL
    return UNCLEAR
