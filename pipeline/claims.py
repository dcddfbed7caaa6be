"""The tutorial's claims, each settled by a controlled comparison in the claims study, and the
advice that follows from the verdicts. Pure functions: study arms in, verdicts and sentences out.

Every claim is tested the same way (pipeline.decide): arms that differ in one thing, paired by
seed, the 95% interval of the difference against a stated smallest effect that matters. The advice
is written from the verdicts and their numbers, so numbers that said the opposite would give the
opposite advice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline import probe_columns as columns
from pipeline.cifar import CIFAR10
from pipeline.decide import (
    EQUAL,
    HIGHER,
    LOWER,
    NOT_RUN,
    NOT_SETTLED,
    NOT_SUPPORTED,
    SUPPORTED,
    Comparison,
    Measure,
    bonferroni,
    combine,
    direction,
    factor,
    paired,
    seeds_for_count,
    seeds_split,
    split_outcome,
)
from pipeline.studies import Arm

Study = Mapping[str, Mapping[str, Arm]]  # cell → activation → arm
PerSeed = Mapping[int, float]

BASELINE, CENTRING, SPARSITY, BATCHNORM, INIT_CONTROL, INIT, INIT_DENSE, DEPTH = (
    "baseline",
    "centring-slope",
    "sparsity",
    "batchnorm",
    "init-glorot-uniform",  # the baseline trained again on the CPU of the two init cells
    "init-he-normal",
    "init-random-normal",
    "depth3",
)
BINARY_SOFTMAX, BINARY_SIGMOID = (
    "two-class-softmax",
    "two-class-sigmoid-output",
)
FAMILY = "pipeline.sigmoid_family:"
CENTRED, STEEP, STEEP_CENTRED = (
    f"{FAMILY}sigmoid_centred",
    f"{FAMILY}sigmoid_x4",
    f"{FAMILY}sigmoid_x4_centred",
)
# Without ReLU's exact zeros: leaky ReLU and ELU keep its positive part exactly, softplus only
# approaches it (log 2 at zero, within 0.01 of z from z = 4.7).
COUSINS = ("leaky_relu", "elu", "softplus")
NAMES = {
    "sigmoid": "σ",
    CENTRED: "σ − ½",
    STEEP: "4σ",
    STEEP_CENTRED: "4σ − 2",
    "relu": "ReLU",
    "leaky_relu": "leaky ReLU",
    "elu": "ELU",
    "softplus": "softplus",
}

ACCURACY = Measure("test accuracy", smallest_effect=0.01, scale=100, unit="percentage points")
GAP = Measure(
    "training − validation accuracy at the last epoch",
    smallest_effect=0.01,
    scale=100,
    unit="percentage points",
)
RISE = Measure("rise of the validation loss from its lowest epoch to the last", 0.05)
EPOCH1 = Measure(
    "validation accuracy after epoch 1", smallest_effect=0.01, scale=100, unit="percentage points"
)
TRAIN_ACC = Measure(
    "training accuracy at the last epoch", 0.01, scale=100, unit="percentage points"
)
SWING = Measure(
    "mean change of validation accuracy from one epoch to the next, last five epochs",
    0.01,
    scale=100,
    unit="percentage points",
)
GRADIENT = Measure(
    "the first layer's weight gradient relative to the output layer's", 1.0, unit="×", log=True
)
FIRST_GRADIENT = Measure("the first layer's own weight gradient", 1.0, unit="×", log=True)
ACTIVATION_TIME = Measure("time of the activation's forward and backward pass", 0.10, log=True)
STEP_TIME = Measure("time of a whole training step", 0.05, log=True)


def steps_measure(arm: Arm) -> Measure:
    """Steps to leave chance, with one epoch of steps as the smallest effect that matters."""
    return Measure("training steps to leave chance", float(arm.steps_per_epoch), unit="steps")


@dataclass(frozen=True)
class Part:
    """One comparison of a claim; `expects_effect` False when the claim predicts no difference
    that matters (its verdict is then the comparison's, turned round)."""

    comparison: Comparison
    expects_effect: bool = True
    name: str = ""  # the part of the claim in a few words, where the label does not say it

    @property
    def verdict(self) -> str:
        return self.comparison.verdict if self.expects_effect else turned(self.comparison.verdict)

    @property
    def title(self) -> str:
        return self.name or self.comparison.label

    def verdict_at(self, level: float) -> str:
        verdict = self.comparison.verdict_at(level)
        return verdict if self.expects_effect else turned(verdict)


def turned(verdict: str) -> str:
    """The verdict on 'no difference that matters' from the verdict on 'a difference'."""
    return {SUPPORTED: NOT_SUPPORTED, NOT_SUPPORTED: SUPPORTED}.get(verdict, verdict)


@dataclass(frozen=True)
class Claim:
    key: str
    claim: str
    arms: str  # the controlled comparison, in words
    parts: tuple[Part, ...]
    evidence: str  # what the numbers say, with the numbers
    missing: str = ""  # what is not in the study yet, when a part could not be made
    untested: str = ""  # a part of the claim no comparison measures, e.g. "converges faster"

    @property
    def no_worse(self) -> bool:
        """Whether a part holds when a difference is *not* supported."""
        return any(not p.expects_effect for p in self.parts)

    @property
    def verdict(self) -> str:
        if self.missing:
            return NOT_RUN
        return combine([p.verdict for p in self.parts])

    def verdict_at(self, level: float) -> str:
        """The verdict with every comparison allowed an error of `level` instead of 5%."""
        if self.missing:
            return NOT_RUN
        return combine([p.verdict_at(level) for p in self.parts])

    @property
    def verdict_by_part(self) -> str:
        """The verdict, with each part's own where the parts disagree."""
        verdicts = [p.verdict for p in self.parts]
        if not self.missing and len(self.parts) == 1 and not self.parts[0].expects_effect:
            return f"{self.verdict} (read as: does no worse)"
        if self.missing or len(set(verdicts)) < 2:
            return self.verdict
        each = "; ".join(f"{p.title}: {v}" for p, v in zip(self.parts, verdicts, strict=True))
        return f"{self.verdict} ({each})"


def held_together(settled: Sequence[Claim]) -> str:
    """What the verdicts become when all the claims together, not each alone, may be called
    wrongly with a 5% chance (Bonferroni), in a paragraph for the report. A claim holds only when
    every one of its comparisons does, so the claims, not the comparisons, are the family."""
    judged = [c for c in settled if not c.missing and c.parts]
    if len(judged) < 2:
        return ""
    level = bonferroni(len(judged))
    needed = seeds_for_count(level)
    changed = [c for c in judged if c.verdict_at(level) != c.verdict]
    counted = [p.comparison.n for c in judged for p in c.parts if p.comparison.split]
    said = (
        "**Many claims at once.** A claim is supported only when every one of its comparisons "
        "is, so each claim alone is called wrongly (supported or not supported) with a chance "
        "of at most 5%, a chance that matters only where an effect lies near its smallest effect "
        f"that matters. Held to 5% for all {len(judged)} claims together (Bonferroni's "
        "correction, the simplest and a strict one: each t-interval at "
        f"{100 * (1 - level):.4g}% instead of 95%"
    )
    if counted:
        said += (
            f"; a count of seeds then needs {needed} seeds that all agree, where the study has "
            f"{min(counted)}, so every comparison that counts seeds becomes not settled, however "
            "large its effect"
        )
    if not changed:
        return said + "), no verdict changes."

    def shown(verdict: str) -> str:
        return f"not settled (a count needs {needed} seeds)" if verdict == NOT_SETTLED else verdict

    rows = "\n".join(f"| {c.key} | {c.verdict} | {shown(c.verdict_at(level))} |" for c in changed)
    return (
        f"{said}), {len(changed)} of the {len(judged)} verdicts change:\n\n"
        "| claim | each alone | all together |\n| --- | --- | --- |\n" + rows
    )


def before_the_results(prespecified: Mapping | None, settled: Sequence[Claim]) -> str:
    """Which verdicts the analysis as committed before the study's results would have given
    otherwise (`prespecified`: its commit and verdict per claim key)."""
    if not prespecified:
        return ""
    then = prespecified["verdicts"]
    moved = [c for c in settled if c.key in then and then[c.key] != c.verdict]
    said = (
        "**Fixed before the results, and after.** The rule, every smallest effect and a first "
        "set of comparisons per claim were committed before any cell of the study had finished "
        f"(commit `{prespecified['commit']}`); some parts and the count of split seeds came "
        "after results had been seen. Judged by that earlier analysis, "
    )
    if not moved:
        return said + "every verdict is the same."
    each = "; ".join(f"{c.key}: {then[c.key]}, now {c.verdict}" for c in moved)
    verdicts = "1 verdict differs" if len(moved) == 1 else f"{len(moved)} verdicts differ"
    if all(c.verdict == SUPPORTED for c in moved):
        way = ", toward supporting the claim" if len(moved) == 1 else ", each toward the claim"
    elif all(then[c.key] == SUPPORTED for c in moved):
        way = ", away from supporting the claim" if len(moved) == 1 else ", each away from it"
    else:
        way = ""
    return (
        said + f"{verdicts} ({each}){way}; the study's README names the later changes that "
        "moved them."
    )


# --- per-seed numbers of an arm -------------------------------------------------------------


def test_accuracy(arm: Arm) -> dict[int, float]:
    return {s: n["test_accuracy"] for s, n in arm.test.items()}


def last(arm: Arm, column: str) -> dict[int, float]:
    return {s: float(h[column].iloc[-1]) for s, h in arm.histories.items()}


def generalisation_gap(arm: Arm) -> dict[int, float]:
    return {
        s: float(h["accuracy"].iloc[-1] - h["val_accuracy"].iloc[-1])
        for s, h in arm.histories.items()
    }


def loss_rise(arm: Arm) -> dict[int, float]:
    return {
        s: float(h["val_loss"].iloc[-1] - h["val_loss"].min()) for s, h in arm.histories.items()
    }


def first_epoch(arm: Arm) -> dict[int, float]:
    return {s: float(h["val_accuracy"].iloc[0]) for s, h in arm.histories.items()}


def swing(arm: Arm, epochs: int = 5) -> dict[int, float]:
    return {
        s: float(np.abs(np.diff(h["val_accuracy"].to_numpy()[-(epochs + 1) :])).mean())
        for s, h in arm.histories.items()
    }


def diagnostic(arm: Arm, column: str, epoch: int | None = None) -> dict[int, float]:
    """A probe measurement per seed at `epoch` (None: the last)."""
    values = {}
    for seed, frame in arm.diagnostics.items():
        row = frame.iloc[-1] if epoch is None else frame.loc[frame["epoch"] == epoch].iloc[0]
        values[seed] = float(row[column])
    return values


def split(*arms: Arm, epoch: int | None = None) -> bool:
    """Whether the compared arms' seeds split between stuck at chance and learned, by the end of
    `epoch` (a measure taken then), or of the whole run."""
    return seeds_split(*(arm.stuck(epoch) for arm in arms))


def attenuation(arm: Arm, epoch: int) -> dict[int, float]:
    """Per seed, the first layer's weight gradient over the output layer's at `epoch`: how much
    of the gradient survives the way back (a scale Adam's per-weight rescaling leaves alone)."""
    frame = next(iter(arm.diagnostics.values()))
    kernels = columns.kernel_layers(frame)
    first = diagnostic(arm, columns.kernel(kernels[0]), epoch)
    output = diagnostic(arm, columns.kernel(kernels[-1]), epoch)
    return {s: first[s] / output[s] for s in first}


def first_kernel(arm: Arm) -> str:
    frame = next(iter(arm.diagnostics.values()))
    return columns.kernel(columns.kernel_layers(frame)[0])


def last_hidden(arm: Arm) -> str:
    frame = next(iter(arm.diagnostics.values()))
    return columns.hidden_layers(frame)[-1]


def inactive_share(arm: Arm) -> dict[int, float]:
    """Share of the last hidden layer's inputs where the activation is flat (ReLU: negative)."""
    return diagnostic(arm, columns.column(columns.FLAT, last_hidden(arm)))


# --- formatting -------------------------------------------------------------------------------


def name(activation: str) -> str:
    return NAMES.get(activation, activation)


def points(value: float) -> str:
    """An accuracy, as a percentage."""
    return f"{value * 100:.1f}%"


def point_gap(value: float) -> str:
    """A difference of two accuracies, in percentage points (the unit is added once)."""
    return f"{value * 100:.1f}".replace("-", "−")


PP = " percentage points"


def describe(arm: Arm, values: PerSeed, fmt: Callable[[float], str], unit: str = "") -> str:
    """An arm's per-seed values: counts and medians when its seeds split at chance."""
    return split_outcome(values, arm.stuck(), fmt, unit)


def _steps(arm: Arm) -> str:
    """Each seed's steps to leave chance, 'never' for a seed that did not: '32, 32, never'."""
    steps, stuck = arm.steps_to_leave_chance(), arm.stuck()
    return ", ".join("never" if stuck[s] else f"{steps[s]:,.0f}" for s in arm.seeds)


def _arm(study: Study, cell: str, activation: str) -> Arm | None:
    return study.get(cell, {}).get(activation)


def _missing(*cells: str) -> str:
    return (
        "The study's cell"
        + ("s " if len(cells) > 1 else " ")
        + ", ".join(f"`{c}`" for c in cells)
        + (" are" if len(cells) > 1 else " is")
        + " not in this checkout yet."
    )


# --- the nine claims ---------------------------------------------------------------------------


def vanishing_gradient(study: Study) -> Claim:
    text = "Sigmoid's gradient vanishes on its way back through the network."
    arms = (
        "sigmoid against ReLU, the tutorial's network, at initialisation: how much of the output "
        "layer's gradient reaches the first layer, and the first layer's own gradient"
    )
    s, r = _arm(study, BASELINE, "sigmoid"), _arm(study, BASELINE, "relu")
    if not (s and r):
        return Claim("1", text, arms, (), "", _missing(BASELINE))
    kept = {a: attenuation(arm, 0) for a, arm in (("sigmoid", s), ("relu", r))}
    # At initialisation no seed has left chance: nothing splits yet.
    at_start = split(s, r, epoch=0)
    comparison = paired("ReLU / sigmoid", GRADIENT, kept["relu"], kept["sigmoid"], at_start)
    # The ratio also moves with the output layer's gradient, which is not what vanishes: the
    # first layer's own gradient is judged beside it.
    first = {a: diagnostic(arm, first_kernel(arm), 0) for a, arm in (("sigmoid", s), ("relu", r))}
    own = paired("ReLU / sigmoid", FIRST_GRADIENT, first["relu"], first["sigmoid"], at_start)
    return Claim(
        "1",
        text,
        arms,
        (
            Part(comparison, name="the share that reaches the first layer"),
            Part(own, name="the first layer's own gradient"),
        ),
        "At initialisation, the first layer's weight gradient divided by the output layer's was "
        f"larger with ReLU than with sigmoid by {comparison.format()}, paired by seed (the same "
        f"images, the same initial weights); per seed {comparison.per_seed()}. "
        f"{ratio_parts(s, r, own)}{offset_or_slope(study, s)} Under Adam, which "
        "scales each weight's step by that weight's own gradient size, a smaller gradient does "
        "not by itself mean smaller steps (the mechanism section below).",
    )


def offset_or_slope(study: Study, sigmoid: Arm, epoch: int = 0) -> str:
    """σ − ½ has σ's slope without its offset: does the lost gradient come back with it? Read
    as a cause only while both networks are in the same state: a network that has left chance
    has other gradients than one still at chance, whatever its activation."""
    centred = _arm(study, CENTRING, CENTRED)
    if centred is None:
        return ""
    c = paired("(σ − ½) / σ", GRADIENT, attenuation(centred, epoch), attenuation(sigmoid, epoch))
    kept = (
        f" σ − ½, with sigmoid's slope and no offset (claim 2's cell), passed {c.format()} as "
        "large a share of the output layer's gradient back to its first layer as σ"
    )
    left = {"σ − ½": left_chance(centred, epoch), "σ": left_chance(sigmoid, epoch)}
    if centred.stuck(epoch) != sigmoid.stuck(epoch):
        return (
            f"{kept} after epoch {epoch}, but by then σ − ½ had left chance on {left['σ − ½']} "
            f"of {len(centred.seeds)} seeds and σ on {left['σ']}: a network that learns "
            "against one at chance, so this ratio does not say whether the offset or the "
            "slope lost the gradient (at initialisation, claim 1, both are still at chance)."
        )
    lean = direction(c)
    if lean == HIGHER:
        cause = "so the lost gradient comes mostly from sigmoid's offset, not from its slope's ceiling of ¼"
    elif lean in (EQUAL, LOWER):
        cause = "so the lost gradient comes with the slope's ceiling of ¼, not with the offset"
    else:
        cause = "not clear from these seeds"
    return f"{kept}: {cause}."


def ratio_parts(s: Arm, r: Arm, own: Comparison) -> str:
    """Claim 1's ratio taken apart: how much comes from the first layer, how much from the
    output layer's gradient, which is not what vanishes."""
    column = columns.kernel(columns.kernel_layers(next(iter(s.diagnostics.values())))[-1])
    ours, theirs = diagnostic(r, column, 0), diagnostic(s, column, 0)
    output = float(np.median([ours[seed] / theirs[seed] for seed in ours if seed in theirs]))
    bound = 1 + GRADIENT.smallest_effect
    if 1 / bound < output < bound:
        said, why = f"within {GRADIENT.smallest_text()} with both", "the ratio is the first layer's"
    else:
        larger = "ReLU" if output > 1 else "sigmoid"
        said = f"larger with {larger} by a median {factor(max(output, 1 / output), 1)}"
        why = (
            "so part of the ratio comes from the output layer, and the first layer's own "
            "gradient is the fairer measure of what vanishes"
        )
    return (
        f"Taken apart: the first layer's own gradient was larger with ReLU by {own.format()}; "
        f"the output layer's was {said}: {why}."
    )


def not_zero_centred(study: Study) -> Claim:
    text = "Sigmoid's outputs are not zero-centred, which slows learning."
    arms = "σ, σ − ½, 4σ and 4σ − 2: centring and slope varied one at a time"
    found = {a: _arm(study, CENTRING, a) for a in ("sigmoid", CENTRED, STEEP, STEEP_CENTRED)}
    if not all(found.values()):
        return Claim("2", text, arms, (), "", _missing(CENTRING))
    acc = {a: test_accuracy(arm) for a, arm in found.items()}

    def compare(label: str, one: str, other: str) -> Comparison:
        return paired(label, ACCURACY, acc[one], acc[other], split(found[one], found[other]))

    centring = (
        compare("σ − ½ − σ", CENTRED, "sigmoid"),
        compare("(4σ − 2) − 4σ", STEEP_CENTRED, STEEP),
    )
    slope = (
        compare("4σ − σ", STEEP, "sigmoid"),
        compare("(4σ − 2) − (σ − ½)", STEEP_CENTRED, CENTRED),
    )
    # "Slows learning" read literally: steps to leave chance, one epoch the smallest effect.
    steps = {a: arm.steps_to_leave_chance() for a, arm in found.items()}

    def sooner(label: str, one: str, other: str) -> Comparison:
        measure = steps_measure(found[one])
        return paired(label, measure, steps[other], steps[one], split(found[one], found[other]))

    faster = (
        sooner("σ − (σ − ½)", CENTRED, "sigmoid"),
        sooner("4σ − (4σ − 2)", STEEP_CENTRED, STEEP),
    )
    per_arm = "; ".join(f"{name(a)} {describe(arm, acc[a], points)}" for a, arm in found.items())
    evidence = (
        f"Test accuracy: {per_arm}. Centring alone, at sigmoid's slope: {centring[0].format()}; "
        f"at a slope of 1: {centring[1].format()}. A slope four times steeper alone, "
        f"not centred: {slope[0].format()}; centred: {slope[1].format()} (that a steeper "
        f"slope helps: {combine([c.verdict for c in slope])} by the same rule). To leave chance, "
        f"σ − ½ took {_steps(found[CENTRED])} steps per seed, σ {_steps(found['sigmoid'])}; "
        f"steps saved by centring, at sigmoid's slope: {faster[0].format()}; at a slope of 1: "
        f"{faster[1].format()} (a seed that never left chance counts as the run's "
        f"{found['sigmoid'].total_steps:,} steps)."
    )
    beside = relu_against_centred(study)
    if beside is not None:
        evidence += f" Beside ReLU in the same cell, ReLU − (σ − ½): {beside.format()}."
    parts = (
        Part(centring[0], name="more accurate, centred at σ's slope"),
        Part(centring[1], name="more accurate, centred at a slope of 1"),
        Part(faster[0], name="sooner, centred at σ's slope"),
        Part(faster[1], name="sooner, centred at a slope of 1"),
    )
    return Claim("2", text, arms, parts, evidence)


def relu_against_centred(study: Study) -> Comparison | None:
    """ReLU − (σ − ½) test accuracy, the two trained side by side in claim 2's cell."""
    cell = study.get(CENTRING, {})
    centred, relu = cell.get(CENTRED), cell.get("relu")
    if centred is None or relu is None:
        return None
    return paired(
        "ReLU − (σ − ½)",
        ACCURACY,
        test_accuracy(relu),
        test_accuracy(centred),
        split(relu, centred),
    )


def relu_keeps_gradient(study: Study) -> Claim:
    text = "ReLU avoids the vanishing gradient."
    arms = (
        "ReLU against sigmoid, the tutorial's network, after the first epoch: how much of the "
        "output layer's gradient reaches the first layer once training is under way"
    )
    s, r = _arm(study, BASELINE, "sigmoid"), _arm(study, BASELINE, "relu")
    if not (s and r):
        return Claim("3", text, arms, (), "", _missing(BASELINE))
    kept = {a: attenuation(arm, 1) for a, arm in (("sigmoid", s), ("relu", r))}
    # Measured after epoch 1: whether the seeds had split by then, not by the end of the run.
    by_then = split(s, r, epoch=1)
    comparison = paired("ReLU / sigmoid", GRADIENT, kept["relu"], kept["sigmoid"], by_then)
    layer = last_hidden(r)
    dead = np.median(list(diagnostic(r, columns.column(columns.DEAD, layer)).values()))
    slope = {
        a: np.median(list(diagnostic(arm, columns.column(columns.MEAN_SLOPE, layer), 1).values()))
        for a, arm in (("sigmoid", s), ("relu", r))
    }
    return Claim(
        "3",
        text,
        arms,
        (Part(comparison),),
        "After epoch 1, the first layer's weight gradient divided by the output layer's was "
        f"larger with ReLU by {comparison.format()}; per seed {comparison.per_seed()}. The dense "
        f"layer's mean slope after epoch 1 had a median of {slope['relu']:.2f} with ReLU and "
        f"{slope['sigmoid']:.2g} with sigmoid. ReLU loses gradient its own way: at the last "
        f"epoch a median {dead:.0%} of its dense units were dead (zero for every probe image)."
        + same_state(s, r, epoch=1)
        + after_the_plateau(s, r)
        + offset_or_slope(study, s, epoch=1),
    )


def after_the_plateau(s: Arm, r: Arm) -> str:
    """Claim 3 in a matched state: the last epoch, on the seeds where sigmoid had left chance
    too, so both networks were learning."""
    last_epoch = s.params.train.epochs
    learned = [seed for seed, stuck in s.stuck().items() if not stuck]
    if not learned:
        return ""
    ours, theirs = attenuation(r, last_epoch), attenuation(s, last_epoch)
    ratio = {seed: ours[seed] / theirs[seed] for seed in learned}
    bound = 1 + GRADIENT.smallest_effect
    if all(v >= bound for v in ratio.values()):
        said = "with both networks learning, ReLU's first layer still got the larger share"
    elif all(v <= 1 / bound for v in ratio.values()):
        said = "with both networks learning, sigmoid's first layer got the larger share"
    else:
        said = (
            f"with both networks learning, the seeds disagree on which got more by {factor(bound)}"
        )
    per_seed = ", ".join(f"{seed}: {factor(v, 1)}" for seed, v in ratio.items())
    return (
        f" In a matched state, at the last epoch on the {len(learned)} seeds where sigmoid had "
        f"left chance too, the same ratio, ReLU over sigmoid, was {per_seed}: {said} (too few "
        "seeds for the rule's interval, so this is evidence beside the verdict, not part of it)."
    )


def left_chance(arm: Arm, epoch: int) -> int:
    """How many of the arm's seeds had left chance by the end of `epoch`."""
    return sum(not stuck for stuck in arm.stuck(epoch).values())


def same_state(s: Arm, r: Arm, epoch: int) -> str:
    """A caveat when, at `epoch`, the arms compared are not in the same state of training."""
    if s.stuck(epoch) == r.stuck(epoch):
        return ""
    left = {"σ": left_chance(s, epoch), "ReLU": left_chance(r, epoch)}
    return (
        f" By the end of epoch {epoch} ReLU had left chance on {left['ReLU']} of "
        f"{len(r.seeds)} seeds and sigmoid on {left['σ']}: the ratio describes the two networks "
        "as they trained, and part of it is the difference between learning and sitting at "
        "chance, not the activation alone."
    )


def starts_faster(study: Study) -> Claim:
    text = "ReLU starts learning sooner and converges faster."
    arms = "ReLU against sigmoid, the tutorial's network"
    s, r = _arm(study, BASELINE, "sigmoid"), _arm(study, BASELINE, "relu")
    if not (s and r):
        return Claim("4", text, arms, (), "", _missing(BASELINE))
    steps = {a: arm.steps_to_leave_chance() for a, arm in (("sigmoid", s), ("relu", r))}
    sooner = paired(
        "sigmoid − ReLU", steps_measure(s), steps["sigmoid"], steps["relu"], split(s, r)
    )
    faster = paired("ReLU − sigmoid", EPOCH1, first_epoch(r), first_epoch(s), split(s, r, epoch=1))
    evidence = (
        f"Steps to leave chance: sigmoid {describe(s, steps['sigmoid'], lambda v: f'{v:.0f}')}; "
        f"ReLU {describe(r, steps['relu'], lambda v: f'{v:.0f}')}; sigmoid − ReLU "
        f"{sooner.format()} ({s.steps_per_epoch} steps make an epoch; a seed that never left "
        f"chance counts as {s.total_steps}, the run's length, so the difference is if anything "
        f"larger{resolution(s)}). Validation accuracy after one epoch, ReLU − sigmoid: "
        f"{faster.format()}. "
        "Both parts measure the start of learning; 'converges faster' is not tested apart."
    )
    return Claim(
        "4", text, arms, (Part(sooner), Part(faster)), evidence, untested="converges faster"
    )


def resolution(arm: Arm) -> str:
    """How finely a late escape step is known: past the step-by-step curve, to the epoch."""
    curve_end = min(int(frame["step"].max()) for frame in arm.steps.values())
    steps = arm.steps_to_leave_chance().values()
    if all(step <= curve_end for step in steps):
        return ""
    return (
        f"; past step {curve_end:,}, where the step-by-step curve ends, a step is the last of the "
        f"epoch it left chance in, known to within {arm.steps_per_epoch} steps"
    )


def generalises(study: Study) -> Claim:
    text = "ReLU generalises better; sigmoid underfits."
    arms = "ReLU against sigmoid, the tutorial's network"
    s, r = _arm(study, BASELINE, "sigmoid"), _arm(study, BASELINE, "relu")
    if not (s and r):
        return Claim("5", text, arms, (), "", _missing(BASELINE))
    better = paired("ReLU − sigmoid", ACCURACY, test_accuracy(r), test_accuracy(s), split(s, r))
    gaps = {a: generalisation_gap(arm) for a, arm in (("sigmoid", s), ("relu", r))}
    smaller_gap = paired("sigmoid − ReLU", GAP, gaps["sigmoid"], gaps["relu"], split(s, r))
    fits = {a: last(arm, "accuracy") for a, arm in (("sigmoid", s), ("relu", r))}
    underfits = paired("ReLU − sigmoid", TRAIN_ACC, fits["relu"], fits["sigmoid"], split(s, r))
    evidence = (
        f"Test accuracy, ReLU − sigmoid: {better.format()}. Training minus validation accuracy "
        f"at the last epoch: sigmoid {describe(s, gaps['sigmoid'], point_gap, PP)}, ReLU "
        f"{describe(r, gaps['relu'], point_gap, PP)}; sigmoid − ReLU {smaller_gap.format()}. Training "
        f"accuracy at the last epoch: sigmoid {describe(s, fits['sigmoid'], points)}, ReLU "
        f"{describe(r, fits['relu'], points)}; ReLU − sigmoid {underfits.format()}. "
    )
    if (better.verdict, underfits.verdict) == (SUPPORTED, SUPPORTED) and direction(
        smaller_gap
    ) == LOWER:
        evidence += (
            "ReLU scores better on unseen images and fits its training images better, while its "
            "training accuracy runs further ahead of its validation accuracy: sigmoid underfits, "
            "and ReLU overfits more."
        )
    evidence += late_start(s, "sigmoid")
    parts = (
        Part(better, name="generalises better"),
        Part(smaller_gap, name="a smaller gap"),
        Part(underfits, name="sigmoid underfits"),
    )
    return Claim("5", text, arms, parts, evidence)


def late_start(arm: Arm, label: str) -> str:
    """The confound of any last-epoch comparison with an arm whose seeds left chance late."""
    epochs = arm.escape_epochs()
    late = sorted(e for e in epochs.values() if e is not None and e > 1)
    if not late:
        return ""
    never = sum(e is None for e in epochs.values())
    return (
        f" A confound: {len(late)} of {len(epochs)} {label} seeds left chance only in "
        f"epoch{'s' * (len(late) > 1)} {', '.join(map(str, late))}"
        + (f" ({never} never did)" if never else "")
        + f", so by the last epoch they had been learning for fewer of the run's "
        f"{arm.params.train.epochs} epochs: part of what these numbers show is a late start."
    )


def cheaper(timing: Mapping | None) -> Claim:
    text = "ReLU is computationally cheaper."
    arms = "sigmoid against ReLU on the network's own tensors, timed in alternation"
    if not timing:
        return Claim("6", text, arms, (), "", "The timing experiment is not in this checkout yet.")
    own = paired("sigmoid / ReLU", ACTIVATION_TIME, *timing_samples(timing, ACTIVATION_PROBES))
    step = paired("sigmoid / ReLU", STEP_TIME, *timing_samples(timing, (STEP_PROBE,)))
    share = timing["summary"]["share_of_step"]
    samples = "paired samples"
    return Claim(
        "6",
        text,
        arms,
        (Part(own, name="the activation alone"), Part(step, name="a whole step")),
        f"The activations' own forward and backward passes (both hidden layers, batch 64) took "
        f"{own.format().replace('seeds', samples)} as long with sigmoid as with ReLU; a whole "
        f"training step {step.format().replace('seeds', samples)}. The activations' share of a "
        f"step: sigmoid {share['sigmoid']:.1%}, ReLU {share['relu']:.1%}. Timed on "
        f"{describe_machine(timing['machine'])}, in one sitting: the intervals are over its "
        "timing samples, not seeds, so they say how steady the timing was there, not how the "
        "ratio moves from one CPU or build of TensorFlow to another. The smallest effects that "
        "matter: a tenth of the activation's own time, and a twentieth of a whole step, the "
        "time a user waits for.",
    )


def describe_machine(machine: Mapping) -> str:
    """'AMD EPYC (AVX2), 2 cores' from the timing file's machine block."""
    units = machine.get("vector_units")
    cores = machine.get("cores")
    return machine["cpu"] + (f" ({units})" if units else "") + (f", {cores} cores" if cores else "")


# The timing experiment's probes (tools/activation_cost.py): each hidden layer's activation,
# forward and backward, on that layer's tensor; and a whole training step.
ACTIVATION_PROBES = ("conv_forward_backward", "dense_forward_backward")
STEP_PROBE = "train_step"


def timing_samples(timing: Mapping, probes: Sequence[str]) -> tuple[dict, dict]:
    """Per sample, the seconds per call summed over `probes`: (sigmoid, relu), paired by sample."""
    raw = timing["raw"]["probes"]
    per_call = {
        a: np.sum(
            [np.asarray(raw[p]["seconds"][a]) / raw[p]["calls_per_sample"] for p in probes], axis=0
        )
        for a in ("sigmoid", "relu")
    }
    return dict(enumerate(per_call["sigmoid"])), dict(enumerate(per_call["relu"]))


def sparsity(study: Study) -> Claim:
    text = "ReLU's sparsity makes learning efficient and curbs overfitting."
    arms = (
        "ReLU against leaky ReLU and ELU, which keep its positive part exactly, and softplus, "
        "which only approaches it; none has exact zeros"
    )
    relu = _arm(study, SPARSITY, "relu")
    cousins = {c: _arm(study, SPARSITY, c) for c in COUSINS}
    if not relu or not all(cousins.values()):
        return Claim("7", text, arms, (), "", _missing(SPARSITY))
    # A cousin with seeds that never left chance did not learn, so it cannot overfit: it is
    # left out of the comparison and said so, not counted as curbing anything.
    learned = [c for c in COUSINS if not any(cousins[c].stuck().values())]
    rises = {c: loss_rise(arm) for c, arm in cousins.items()} | {"relu": loss_rise(relu)}
    gaps = {c: generalisation_gap(arm) for c, arm in cousins.items()}
    gaps["relu"] = generalisation_gap(relu)
    varied = split(relu, *(cousins[c] for c in learned))

    def against_relu(measure: Measure, values: Mapping[str, PerSeed]) -> tuple[Part, ...]:
        return tuple(
            Part(paired(f"{name(c)} − ReLU", measure, values[c], values["relu"], varied))
            for c in learned
        )

    rise_parts, gap_parts = against_relu(RISE, rises), against_relu(GAP, gaps)
    inactive = {
        a: np.median(list(inactive_share(arm).values()))
        for a, arm in (("relu", relu), *cousins.items())
    }
    acc = {
        a: np.median(list(test_accuracy(arm).values()))
        for a, arm in (("relu", relu), *cousins.items())
    }
    evidence = (
        "Share of the dense layer's inputs where the activation is flat at the last epoch "
        "(ReLU: negative, an exact zero; median over seeds): "
        + ", ".join(f"{name(a)} {v:.0%}" for a, v in inactive.items())
        + ". Overfitting, cousin − ReLU (the claim expects the sparse ReLU to overfit less, so "
        "each difference above the smallest effect): rise of the validation loss from its "
        "lowest epoch to the last, "
        + "; ".join(f"{p.comparison.label} {p.comparison.format()}" for p in rise_parts)
        + "; training − validation accuracy at the last epoch, "
        + "; ".join(f"{p.comparison.label} {p.comparison.format()}" for p in gap_parts)
        + "".join(
            f". {name(c)} is left out: {describe(cousins[c], test_accuracy(cousins[c]), points)}"
            " (test accuracy); a network that does not learn cannot overfit"
            for c in COUSINS
            if c not in learned
        )
        + ". The cousins differ from ReLU in their whole negative part, not only in having no "
        "exact zeros: the comparison measures ReLU against them, and sparsity is the claim's "
        "reading of the difference. The claim's first half, that sparsity makes learning "
        "efficient, is not judged apart; median test accuracy, for reference: "
        + ", ".join(f"{name(a)} {points(v)}" for a, v in acc.items())
        + "."
    )
    evidence += flatness_order(cousins, learned, gaps)
    parts = rise_parts + gap_parts
    return Claim("7", text, arms, parts, evidence, untested="makes learning efficient")


def flatness_order(cousins: Mapping[str, Arm], learned: Sequence[str], gaps: Mapping) -> str:
    """Sparsity as the cause predicts a dose: of two cousins, the one whose inputs are flat more
    often overfits less. Tested on the two that learned with the most and the least flatness."""
    if len(learned) < 2:
        return ""
    flat = {c: float(np.median(list(inactive_share(cousins[c]).values()))) for c in learned}
    low, high = min(learned, key=flat.get), max(learned, key=flat.get)
    if flat[high] - flat[low] < 0.05:
        return ""  # no difference in flatness to test a dose with
    c = paired(
        f"{name(low)} − {name(high)}",
        GAP,
        gaps[low],
        gaps[high],
        split(cousins[low], cousins[high]),
    )
    said = (
        f" As a dose: {name(high)}'s inputs were flat {flat[high]:.0%} of the time and "
        f"{name(low)}'s {flat[low]:.0%}; training − validation gap, {c.label}: {c.format()}"
    )
    lean = direction(c)
    if lean == HIGHER:
        return f"{said}: the flatter one overfitted less, as sparsity as the cause would have it."
    if lean in (EQUAL, LOWER):
        return (
            f"{said}: the flatter one did not overfit less, so the comparison does not single "
            "out sparsity as the cause."
        )
    return f"{said}: whether the flatter one overfits less is not clear from these seeds."


def depth(study: Study) -> Claim:
    text = "Sigmoid is fine in shallow networks; ReLU is for deep ones."
    arms = (
        "one against three hidden dense layers, the same 7,200-value input to the first (32 "
        "filters × 15 × 15 after pooling)"
    )
    s1, r1 = _arm(study, BASELINE, "sigmoid"), _arm(study, BASELINE, "relu")
    s3, r3 = _arm(study, DEPTH, "sigmoid"), _arm(study, DEPTH, "relu")
    if not (s1 and r1 and s3 and r3):
        return Claim("8", text, arms, (), "", _missing(DEPTH))
    gap1 = {s: test_accuracy(r1)[s] - test_accuracy(s1)[s] for s in r1.seeds}
    gap3 = {s: test_accuracy(r3)[s] - test_accuracy(s3)[s] for s in r3.seeds}
    varied = split(s1, r1, s3, r3)
    shallow = paired(
        "ReLU − sigmoid, 1 layer", ACCURACY, test_accuracy(r1), test_accuracy(s1), varied
    )
    widens = paired("gap at 3 layers − gap at 1", ACCURACY, gap3, gap1, varied)
    relu = paired(
        "ReLU, 3 layers − 1", ACCURACY, test_accuracy(r3), test_accuracy(r1), split(r1, r3)
    )
    evidence = (
        f"The first half, that sigmoid does as well as ReLU when shallow: ReLU − sigmoid test "
        f"accuracy with one hidden dense layer {shallow.format()}. The second, that depth "
        f"widens ReLU's lead: the gap grew by {widens.format()} from one layer to three (per "
        f"seed {widens.per_seed()}). Sigmoid's test accuracy: one layer "
        f"{describe(s1, test_accuracy(s1), points)}; three {describe(s3, test_accuracy(s3), points)}. "
        f"ReLU's own test accuracy, three layers − one: {relu.format()}."
    )
    floor = depth_floor(study)
    if floor:
        # At chance at both depths, sigmoid has no accuracy left to lose: only ReLU moves the gap.
        seeds = f"seed{'s' * (len(floor) > 1)} {', '.join(map(str, floor))}"
        evidence += (
            f" On {seeds} sigmoid stayed at chance with one layer and with three, so the gap "
            "there could change only with ReLU's accuracy"
        )
        if floor_ties(study, widens):
            evidence += (
                ": every seed whose gap did not grow by the smallest effect is such a seed, a "
                "tie at the floor rather than a seed where depth helped sigmoid"
            )
        evidence += "."
    deep_stuck = [s for s, stuck in s3.stuck().items() if stuck]
    if deep_stuck:
        stuck_shallow = s1.stuck()
        learned = [v for s, v in s1.steps_to_leave_chance().items() if not stuck_shallow[s]]
        evidence += (
            f" At chance means through all {s3.total_steps:,} training steps of the run"
            + (
                f"; with one layer sigmoid's other seeds needed {min(learned):,.0f} to "
                f"{max(learned):,.0f}"
                if learned
                else ""
            )
            + ", and whether a longer run would free the deeper network was not tested."
        )
    parts = (
        Part(shallow, expects_effect=False, name="fine when shallow"),
        Part(widens, name="falls further behind when deep"),
    )
    return Claim("8", text, arms, parts, evidence)


def depth_floor(study: Study) -> list[int]:
    """Seeds on which sigmoid stayed at chance with one hidden dense layer and with three."""
    s1, s3 = _arm(study, BASELINE, "sigmoid"), _arm(study, DEPTH, "sigmoid")
    if not (s1 and s3):
        return []
    return at_chance_in_both(s1, s3)


def floor_ties(study: Study, widens: Comparison) -> list[int]:
    """The seeds whose gap did not grow by the smallest effect, when every one of them had
    sigmoid at chance at both depths (ties at the floor); otherwise none."""
    s1, s3 = _arm(study, BASELINE, "sigmoid"), _arm(study, DEPTH, "sigmoid")
    return ties_at_floor(widens, s1, s3) if s1 and s3 else []


def ties_at_floor(comparison: Comparison, one: Arm, other: Arm) -> list[int]:
    """The seeds whose difference fell short of the smallest effect, when every one of them was
    at chance for the whole run in both arms: ties at the floor of what the run can show, not
    seeds that went the other way; otherwise none."""
    short = [s for s, d in comparison.differences.items() if d <= comparison.threshold]
    return short if short and set(short) <= set(at_chance_in_both(one, other)) else []


def at_chance_in_both(one: Arm, other: Arm) -> list[int]:
    """The seeds at chance for the whole run in both arms."""
    first, second = one.stuck(), other.stuck()
    return [s for s in other.seeds if first.get(s) and second.get(s)]


def stuck_by_depth(study: Study) -> dict[str, tuple[int, int]] | None:
    """Per activation (sigmoid, relu): its seeds stuck at chance for the whole run with one
    hidden dense layer and with three."""
    found = {}
    for activation in ("sigmoid", "relu"):
        one, three = _arm(study, BASELINE, activation), _arm(study, DEPTH, activation)
        if not (one and three):
            return None
        found[activation] = (sum(one.stuck().values()), sum(three.stuck().values()))
    return found


def output_layer(study: Study) -> Claim:
    text = "Sigmoid belongs in the output layer of a binary classifier."
    arms = "two classes of CIFAR-10, ReLU hidden layers: one sigmoid unit with binary cross-entropy against a two-way softmax"
    soft, sig = _arm(study, BINARY_SOFTMAX, "relu"), _arm(study, BINARY_SIGMOID, "relu")
    if not (soft and sig):
        return Claim("9", text, arms, (), "", _missing(BINARY_SOFTMAX, BINARY_SIGMOID))
    arms = (
        f"{' against '.join(soft.params.data.classes) or 'every class'} (CIFAR-10), ReLU hidden "
        "layers: one sigmoid unit with binary cross-entropy against a two-way softmax"
    )
    comparison = paired(
        "softmax − sigmoid output",
        ACCURACY,
        test_accuracy(soft),
        test_accuracy(sig),
        split(soft, sig),
    )
    p = soft.params.data
    images = p.train_limit or p.train_images - p.val_size
    test_images = CIFAR10.test_images * p.n_classes // CIFAR10.n_classes
    setting = (
        f"These cells train on {images:,} images of {p.n_classes} classes ({soft.steps_per_epoch} "
        f"steps an epoch, {soft.total_steps:,} in all) and test on {test_images:,}, so they are "
        "compared only with each other."
    )
    hidden = [_arm(study, cell, "sigmoid") for cell in (BINARY_SOFTMAX, BINARY_SIGMOID)]
    stuck = [s for arm in hidden if arm for s in arm.stuck().values()]
    if stuck:
        setting += (
            f" With sigmoid hidden layers instead, {sum(stuck)} of {len(stuck)} two-class runs "
            f"never left chance in those {soft.total_steps:,} steps"
        )
        baseline = _arm(study, BASELINE, "sigmoid")
        if baseline and not all(baseline.stuck().values()):
            fastest = min(
                steps
                for seed, steps in baseline.steps_to_leave_chance().items()
                if not baseline.stuck()[seed]
            )
            setting += (
                f", fewer than the fastest ten-class sigmoid seed needed ({fastest:,.0f}): "
                "the step budget, not the number of classes, may be what held them"
            )
        setting += "."
    return Claim(
        "9",
        text,
        arms,
        (Part(comparison, expects_effect=False),),
        f"Test accuracy, two-way softmax − sigmoid output: {comparison.format()} (the claim holds "
        "if the sigmoid output does no worse by the smallest effect that matters). A two-way "
        "softmax over logits a and b gives the first class σ(a − b): the same family of models, "
        f"with one redundant output unit. {setting}",
    )


# --- further questions, by the same rule --------------------------------------------------------


def batchnorm_rescues(study: Study) -> Claim:
    text = "Batch normalisation rescues sigmoid's training."
    arms = "sigmoid with and without batch normalisation before each hidden activation"
    plain, bn = _arm(study, BASELINE, "sigmoid"), _arm(study, BATCHNORM, "sigmoid")
    if not (plain and bn):
        return Claim("BN-1", text, arms, (), "", _missing(BATCHNORM))
    comparison = paired(
        "with − without", TRAIN_ACC, last(bn, "accuracy"), last(plain, "accuracy"), split(bn, plain)
    )
    steps = {a: arm.steps_to_leave_chance() for a, arm in (("plain", plain), ("bn", bn))}
    tested = batchnorm_test_accuracy(study)
    return Claim(
        "BN-1",
        text,
        arms,
        (Part(comparison),),
        f"Sigmoid's training accuracy at the last epoch, with − without: {comparison.format()}. "
        f"Steps to leave chance: without {describe(plain, steps['plain'], lambda v: f'{v:.0f}')}; "
        f"with {describe(bn, steps['bn'], lambda v: f'{v:.0f}')}. Test accuracy, with − without "
        "(not part of the claim, which is about training): "
        + "; ".join(f"{name(a)} {c.format()}" for a, c in tested.items())
        + ".",
    )


def batchnorm_test_accuracy(study: Study) -> dict[str, Comparison]:
    """Per activation of the batchnorm cell: test accuracy with − without, paired by seed."""
    found = {}
    for activation in ("sigmoid", "relu"):
        plain, bn = _arm(study, BASELINE, activation), _arm(study, BATCHNORM, activation)
        if plain and bn:
            found[activation] = paired(
                "with − without",
                ACCURACY,
                test_accuracy(bn),
                test_accuracy(plain),
                split(bn, plain),
            )
    return found


def batchnorm_unsteady(study: Study) -> Claim:
    text = "Batch normalisation makes this network's validation accuracy unsteady."
    arms = "ReLU with and without batch normalisation"
    plain, bn = _arm(study, BASELINE, "relu"), _arm(study, BATCHNORM, "relu")
    if not (plain and bn):
        return Claim("BN-2", text, arms, (), "", _missing(BATCHNORM))
    comparison = paired("with − without", SWING, swing(bn), swing(plain), split(bn, plain))
    best = {
        a: {s: float(h["val_accuracy"].max()) for s, h in arm.histories.items()}
        for a, arm in (("plain", plain), ("bn", bn))
    }
    final = {a: last(arm, "val_accuracy") for a, arm in (("plain", plain), ("bn", bn))}
    return Claim(
        "BN-2",
        text,
        arms,
        (Part(comparison),),
        f"ReLU's validation accuracy moved from one epoch to the next by {comparison.format()} "
        "more with batch normalisation (mean absolute change over the last five epochs). "
        "Validation accuracy at the best epoch and at the last, median over seeds: without "
        f"{points(np.median(list(best['plain'].values())))} and "
        f"{points(np.median(list(final['plain'].values())))}; with "
        f"{points(np.median(list(best['bn'].values())))} and "
        f"{points(np.median(list(final['bn'].values())))}."
        f"{test_drop(study, {'plain': plain, 'bn': bn}, best, final)}",
    )


def test_drop(
    study: Study,
    arms: Mapping[str, Arm],
    best: Mapping[str, PerSeed],
    final: Mapping[str, PerSeed],
) -> str:
    """Where ReLU's test accuracy went with batch normalisation. On validation, means over seeds,
    so the parts add up: the last epoch's drop = a lower best epoch + a last epoch further below
    its best."""
    tested = batchnorm_test_accuracy(study).get("relu")
    if tested is None:
        return ""
    seeds = sorted(set(best["plain"]) & set(best["bn"]))

    def mean(values) -> float:
        return float(np.mean(list(values)))

    lower_best = mean(best["plain"][s] - best["bn"][s] for s in seeds)
    short = {a: mean(best[a][s] - final[a][s] for s in seeds) for a in ("plain", "bn")}
    drop = lower_best + short["bn"] - short["plain"]

    def median(arm: Arm, key: str) -> float:
        return float(np.median([n[key] for n in arm.test.values()]))

    def each(arm: Arm) -> str:
        return ", ".join(points(n["test_accuracy"]) for _, n in sorted(arm.test.items()))

    trained = {a: np.median(list(last(arm, "accuracy").values())) for a, arm in arms.items()}
    return (
        f" ReLU's test accuracy, with − without: {tested.format()}; per seed, with "
        f"{each(arms['bn'])}; without {each(arms['plain'])}. Its test loss, median over seeds: "
        f"{median(arms['bn'], 'test_loss'):.2f} with, {median(arms['plain'], 'test_loss'):.2f} "
        "without; the most predicted class took a median "
        f"{points(median(arms['bn'], 'majority_share'))} of the test predictions with, "
        f"{points(median(arms['plain'], 'majority_share'))} without. On the validation images "
        f"(means over seeds), the last epoch scored {point_gap(drop)}{PP} lower with batch "
        f"normalisation: {point_gap(lower_best)} from a lower best epoch, "
        f"{point_gap(short['bn'] - short['plain'])} from a last epoch further below its best "
        f"({point_gap(short['bn'])} below with, {point_gap(short['plain'])} without). The best "
        "of ten swinging epochs is itself lifted by the swings, so part of that split measures "
        "the unsteadiness again. Training accuracy at the last epoch: "
        f"{points(trained['bn'])} with, {points(trained['plain'])} without. Whether the scores "
        "fall because the batch statistics kept for testing lag the weights, or because the "
        "network fits its training images too closely, the study does not test."
    )


def initialisation(study: Study) -> Claim:
    text = "Sigmoid's plateau comes from its initialisation: larger initial weights saturate it longer."
    arms = (
        "sigmoid under Glorot uniform (Keras' default) against He normal (12 times Glorot's weight "
        "variance in the convolution, about the same in the dense layer) and random normal of "
        "standard deviation 0.05 (9 times Glorot's variance in the dense layer, 0.4 times in the "
        "convolution), in every hidden layer; the output layer keeps Glorot"
    )
    # Glorot from the control cell, trained on the init cells' CPU: a seed's trajectory moves
    # with the CPU's rounding, so the baseline cell, trained on another CPU, is no control.
    glorot = _arm(study, INIT_CONTROL, "sigmoid")
    he, dense = _arm(study, INIT, "sigmoid"), _arm(study, INIT_DENSE, "sigmoid")
    if not (glorot and he and dense):
        absent = [c for c in (INIT_CONTROL, INIT, INIT_DENSE) if c not in study]
        return Claim("init", text, arms, (), "", _missing(*absent))
    named = {"Glorot": glorot, "He normal": he, "random normal": dense}
    steps = {name: arm.steps_to_leave_chance() for name, arm in named.items()}
    larger = [
        paired(
            f"{name} − Glorot",
            steps_measure(glorot),
            steps[name],
            steps["Glorot"],
            split(glorot, named[name]),
        )
        for name in ("He normal", "random normal")
    ]
    described = "; ".join(
        f"{name} {describe(arm, steps[name], lambda v: f'{v:,.0f}')} ({_steps(arm)} per seed)"
        for name, arm in named.items()
    )
    floor = ""
    for label, c in zip(("He normal", "random normal"), larger, strict=True):
        ties = ties_at_floor(c, glorot, named[label])
        if ties:
            seeds = f"seed{'s' * (len(ties) > 1)} {', '.join(map(str, ties))}"
            floor += (
                f" Under {label}, the only {seeds} short of the smallest effect never left chance "
                f"under either initialiser: the run's {glorot.total_steps:,} steps ended first, "
                f"so the difference there is unknown, not a sign that {label} shortened the "
                "plateau."
            )
    column = columns.column(columns.FLAT, last_hidden(glorot))

    def flat(epoch: int) -> str:
        return ", ".join(
            f"{name} {np.median(list(diagnostic(arm, column, epoch).values())):.0%}"
            for name, arm in named.items()
        )

    saturated = (
        " The dense layer's share of flat (saturated) inputs, median over seeds, at "
        f"initialisation: {flat(0)}; after epoch 1: {flat(1)}."
    )
    return Claim(
        "init",
        text,
        arms,
        tuple(Part(c) for c in larger),
        f"Steps to leave chance: {described}. Larger convolution weights (He normal − Glorot): "
        f"{larger[0].format()}; larger dense and smaller convolution weights (random normal − "
        f"Glorot): {larger[1].format()}. Paired by seed, these arms share the order of the "
        "training images only: their initial weights come from other distributions, so a seed's "
        f"difference holds the draw's luck as well as the scheme.{floor}{saturated}"
        f"{other_cpu(glorot, _arm(study, BASELINE, 'sigmoid'))}",
    )


def stuck_by_initialiser(study: Study) -> dict[str, tuple[int, int]] | None:
    """Per initialiser: sigmoid's seeds at chance for the whole run, and its seeds."""
    cells = {"Glorot": INIT_CONTROL, "He normal": INIT, "random normal": INIT_DENSE}
    arms = {name: _arm(study, cell, "sigmoid") for name, cell in cells.items()}
    if not all(arms.values()):
        return None
    return {name: (sum(a.stuck().values()), len(a.seeds)) for name, a in arms.items()}


def other_cpu(control: Arm, baseline: Arm | None) -> str:
    """The control against the baseline: the same params and seeds on another CPU, which shows
    how far a seed's plateau moves with the CPU alone."""
    if baseline is None:
        return ""

    def cpu(arm: Arm) -> str:
        if arm.machine:
            return f"{arm.machine['cpu']} ({arm.machine['vector_extensions']})"
        return "another CPU, which the cell did not record (the study's README names it)"

    steps = {
        "control": control.steps_to_leave_chance(),
        "baseline": baseline.steps_to_leave_chance(),
    }
    floor = at_chance_in_both(baseline, control)
    both = [s for s in control.seeds if s not in floor]
    moved = max((abs(steps["control"][s] - steps["baseline"][s]) for s in both), default=0.0)
    said = (
        f" Glorot here is `{control.cell}`: the baseline's params and seeds, trained again on "
        f"{cpu(control)} beside the two init cells; `{baseline.cell}` ran on {cpu(baseline)}. "
        f"Sigmoid left chance after {_steps(control)} steps per seed on the first and after "
        f"{_steps(baseline)} on the second. "
    )
    smallest = steps_measure(control).smallest_effect
    if moved > smallest:
        return said + (
            f"The CPU alone moved a seed by up to {moved:,.0f} steps, more than the smallest "
            f"effect of {smallest:,.0f}: a single seed's difference of that size between "
            "initialisers is within what the CPU alone does, which is why each initialiser is "
            "compared with the control trained on its own CPU, and why the count rule asks "
            "every seed to agree."
        )
    return said + "The CPU alone moved no seed by the smallest effect or more."


def judge_tutorial_claims(study: Study, timing: Mapping | None = None) -> list[Claim]:
    """The tutorial's nine claims, in its order."""
    return [
        vanishing_gradient(study),
        not_zero_centred(study),
        relu_keeps_gradient(study),
        starts_faster(study),
        generalises(study),
        cheaper(timing),
        sparsity(study),
        depth(study),
        output_layer(study),
    ]


def further(study: Study) -> list[Claim]:
    """Questions the tutorial leaves open, settled by the same rule."""
    return [batchnorm_rescues(study), batchnorm_unsteady(study), initialisation(study)]
