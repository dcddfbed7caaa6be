"""The tutorial's claims, settled one by one from what this run and the committed studies measured.

Pure functions: results in, sentences out. Every number in a sentence is read from the files;
a verdict follows from a stated comparison of those numbers, or says that it was not tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.escape import ESCAPE_THRESHOLD, format_escape
from pipeline.plots import layer_labels
from pipeline.results import RunResults, Scores, Spread
from pipeline.stats import summarize_values
from pipeline.studies import Cell

SUPPORTED, MIXED, NOT_SUPPORTED, NOT_TESTED = (
    "supported",
    "mixed",
    "not supported",
    "not tested here",
)
SIGMOID_PEAK_SLOPE = 0.25  # σ'(0): the largest slope sigmoid ever has
RELU_FAMILY = ("relu", "leaky_relu", "elu", "gelu", "swish")


@dataclass(frozen=True)
class Claim:
    claim: str
    verdict: str
    evidence: str


@dataclass(frozen=True)
class Evidence:
    """What the claims are settled from: this run, and the studies committed beside it."""

    run: RunResults
    cells: Sequence[Cell]  # the depth × batch-normalisation study; empty when absent
    activation_study: dict[str, Scores]  # the seven-activation study's test scores; {} if absent

    @property
    def sigmoid(self) -> pd.DataFrame:
        return self.run.diagnostics["sigmoid"]

    @property
    def relu(self) -> pd.DataFrame:
        return self.run.diagnostics["relu"]

    def tutorial_cell(self) -> Cell | None:
        """The study's cell with the tutorial's network, when it has several seeds."""
        for cell in self.cells:
            if cell.depth == 1 and not cell.batch_norm and cell.seeds > 1:
                return cell
        return None


def at(frame: pd.DataFrame, column: str, epoch: int) -> float:
    return float(frame.loc[frame["epoch"] == epoch, column].iloc[0])


def hidden_layers(frame: pd.DataFrame) -> list[str]:
    """The layers whose outputs pass through the activation, in the network's order."""
    return [c.removeprefix("mean_slope/") for c in frame.columns if c.startswith("mean_slope/")]


def kernel_layers(frame: pd.DataFrame) -> list[str]:
    return [
        c.split("/")[1]
        for c in frame.columns
        if c.startswith("grad_norm/") and c.endswith("kernel")
    ]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b > 0 else "infinitely"


def _escapes(per_seed: dict[int, int | None], unit: str = "") -> str:
    return ", ".join(format_escape(e) + ("" if e is None else unit) for e in per_seed.values())


def _spread(values: Sequence[float]) -> Spread:
    mean = float(np.mean(values))
    if len(values) < 2:
        return Spread(mean, None, None, None)
    summary = summarize_values(values)
    return Spread(mean, summary["std"], summary["ci_low"], summary["ci_high"])


def cell_gap(cell: Cell) -> Spread:
    """ReLU − sigmoid test accuracy in a study cell, paired by seed."""
    paired = cell.evaluation.paired.get("test_accuracy")
    if paired is not None:
        return paired.difference
    details = cell.evaluation.details
    relu, sigmoid = details["relu"].accuracy_per_seed, details["sigmoid"].accuracy_per_seed
    return _spread([relu[s] - sigmoid[s] for s in relu])


def vanishing_gradient(ev: Evidence) -> Claim:
    s, r = ev.sigmoid, ev.relu
    labels = layer_labels(s)
    first = kernel_layers(s)[0]
    column = f"grad_norm/{first}/kernel"
    g_s, g_r = at(s, column, 0), at(r, column, 0)
    layers = hidden_layers(s)
    slopes_s = [at(s, f"mean_slope/{layer}", 1) for layer in layers]
    slopes_r = [at(r, f"mean_slope/{layer}", 1) for layer in layers]
    smaller_everywhere = all(a < b for a, b in zip(slopes_s, slopes_r, strict=True))
    verdict = (
        SUPPORTED if g_s < g_r and smaller_everywhere else MIXED if g_s < g_r else NOT_SUPPORTED
    )
    slope_text = "; ".join(
        f"{labels[layer]} {a:.3f} against ReLU's {b:.3f}"
        for layer, a, b in zip(layers, slopes_s, slopes_r, strict=True)
    )
    return Claim(
        "Sigmoid's gradient vanishes on its way back through the network.",
        verdict,
        f"At initialisation the {labels[first]}'s weight gradient was {ratio(g_r, g_s)} smaller "
        f"with sigmoid ({g_s:.3g}) than with ReLU ({g_r:.3g}). Every gradient on its way back is "
        "multiplied by the activation's slope at each layer it crosses; after epoch 1 sigmoid's "
        f"mean slope was {slope_text} (sigmoid's slope never exceeds {SIGMOID_PEAK_SLOPE}). "
        "Not every layer's gradient is smaller: see *Numbers that seem to disagree* below.",
    )


def not_zero_centred(ev: Evidence) -> Claim:
    s, r = ev.sigmoid, ev.relu
    labels = layer_labels(s)
    layer = hidden_layers(s)[-1]
    mean_s = at(s, f"mean_activation/{layer}", 1)
    mean_r = at(r, f"mean_activation/{layer}", 1)
    epoch1 = {a: float(h["val_accuracy"].iloc[0]) for a, h in ev.run.histories.items()}
    text = (
        f"After epoch 1 the {labels[layer]} layer's outputs averaged {mean_s:.2f} with sigmoid, "
        f"all positive; ReLU's are never negative either (mean {mean_r:.2f}), yet ReLU reached "
        f"{epoch1['relu']:.4f} validation accuracy after one epoch against sigmoid's "
        f"{epoch1['sigmoid']:.4f}, so all-positive outputs alone do not stall learning."
    )
    tanh = ev.activation_study.get("tanh")
    sigmoid = ev.activation_study.get("sigmoid")
    if tanh and sigmoid:
        text += (
            f" tanh, sigmoid's zero-centred twin (tanh(z) = 2σ(2z) − 1), reached test accuracy "
            f"{tanh.accuracy.format()} against sigmoid's {sigmoid.accuracy.format()} over "
            f"{tanh.seeds} seeds in the seven-activation study; but tanh's slope also peaks at 1, "
            f"four times sigmoid's {SIGMOID_PEAK_SLOPE}, so this experiment cannot tell the two "
            "causes apart."
        )
    verdict = MIXED if tanh and sigmoid else NOT_SUPPORTED
    return Claim("Sigmoid's outputs are not zero-centred, which slows learning.", verdict, text)


def relu_keeps_gradient(ev: Evidence) -> Claim:
    s, r = ev.sigmoid, ev.relu
    labels = layer_labels(r)
    first = kernel_layers(r)[0]
    column = f"grad_norm/{first}/kernel"
    larger = bool((r[column].to_numpy() > s[column].to_numpy()).all())
    last = int(r["epoch"].max())
    layers = hidden_layers(r)
    slopes = ", ".join(f"{labels[x]} {at(r, f'mean_slope/{x}', 1):.2f}" for x in layers)
    every = "at every epoch" if larger else "not at every epoch"
    return Claim(
        "ReLU avoids the vanishing gradient.",
        SUPPORTED if larger else MIXED,
        f"ReLU's slope is exactly 1 wherever its input is positive, so its mean slope is the share "
        f"of active inputs: after epoch 1, {slopes}. Its {labels[first]}'s weight gradient was "
        f"larger than sigmoid's {every}: {ratio(at(r, column, 0), at(s, column, 0))} at "
        f"initialisation, {ratio(at(r, column, last), at(s, column, last))} at epoch {last}.",
    )


def starts_faster(ev: Evidence) -> Claim:
    run = ev.run
    training = run.evaluation.training
    steps_s = training["sigmoid"].escape_step_per_seed
    steps_r = training["relu"].escape_step_per_seed
    per_epoch = training["relu"].steps_per_epoch
    epoch1 = {a: float(h["val_accuracy"].iloc[0]) for a, h in run.histories.items()}
    best = {a: training[a].best_epoch for a in ("sigmoid", "relu")}
    order = [
        (steps_r[seed] is not None and (steps_s[seed] is None or steps_r[seed] <= steps_s[seed]))
        for seed in steps_r
    ]
    faster = all(order) and epoch1["relu"] > epoch1["sigmoid"]
    text = (
        f"Escape step (the first step at which validation accuracy on 1,000 held-out images "
        f"exceeded {ESCAPE_THRESHOLD}; {per_epoch} steps make an epoch), per seed: sigmoid "
        f"{_escapes(steps_s)}, ReLU {_escapes(steps_r)}. After one epoch: ReLU "
        f"{epoch1['relu']:.4f}, sigmoid {epoch1['sigmoid']:.4f} validation accuracy. Best "
        f"validation epoch: ReLU {best['relu']}, sigmoid {best['sigmoid']} of "
        f"{training['sigmoid'].epochs}."
    )
    cell = ev.tutorial_cell()
    if cell is not None:
        escapes = cell.evaluation.training
        text += (
            f" Over {cell.seeds} seeds of the same network (depth study), sigmoid's escape epoch "
            f"was {_escapes(escapes['sigmoid'].escape_epoch_per_seed)} and ReLU's "
            f"{_escapes(escapes['relu'].escape_epoch_per_seed)}."
        )
        faster = faster and all(e == 1 for e in escapes["relu"].escape_epoch_per_seed.values())
    return Claim(
        "ReLU starts learning sooner and converges faster.",
        SUPPORTED if faster else MIXED,
        text,
    )


def generalises(ev: Evidence) -> Claim:
    run = ev.run
    last = {a: run.histories[a].iloc[-1] for a in ("sigmoid", "relu")}
    gap = {a: float(last[a]["accuracy"] - last[a]["val_accuracy"]) for a in last}
    test = {a: run.evaluation.test[a].accuracy.mean for a in last}
    underfits = last["sigmoid"]["accuracy"] < last["relu"]["accuracy"] and gap["sigmoid"] < 0.05
    text = (
        f"At the last epoch sigmoid's training accuracy was {last['sigmoid']['accuracy']:.4f} and "
        f"its validation accuracy {last['sigmoid']['val_accuracy']:.4f}: it fits the training "
        f"set no better than unseen images, the mark of underfitting. ReLU's were "
        f"{last['relu']['accuracy']:.4f} and {last['relu']['val_accuracy']:.4f}: a gap of "
        f"{gap['relu'] * 100:.1f} points against sigmoid's {gap['sigmoid'] * 100:.1f}. On the "
        f"test set ReLU scored {test['relu']:.4f}, sigmoid {test['sigmoid']:.4f}."
    )
    cell = ev.tutorial_cell()
    if cell is not None:
        text += (
            f" Paired by seed over {cell.seeds} seeds (depth study, the tutorial's network), "
            f"ReLU − sigmoid test accuracy was {cell_gap(cell).format(signed=True)} "
            "(mean ± std [95% interval])."
        )
    better = test["relu"] > test["sigmoid"]
    overfits_more = gap["relu"] > gap["sigmoid"]
    if better and overfits_more:
        text += (
            " ReLU does better on unseen images because it fits far more, not because it "
            "overfits less: its gap between training and validation is the larger."
        )
    if not better:
        verdict = NOT_SUPPORTED
    elif underfits and not overfits_more:
        verdict = SUPPORTED
    else:
        verdict = MIXED
    return Claim("ReLU generalises better; sigmoid underfits.", verdict, text)


def cheaper() -> Claim:
    return Claim(
        "ReLU is computationally cheaper.",
        NOT_TESTED,
        "Per element, max(0, z) is cheaper than 1/(1 + e^−z), but in this network an activation is "
        "one elementwise pass beside a convolution and two matrix products per step. One run's "
        "training times on a shared machine cannot separate a difference that small, so none is "
        "claimed.",
    )


def sparsity(ev: Evidence) -> Claim:
    r, h = ev.relu, ev.run.histories
    labels = layer_labels(r)
    layer = hidden_layers(r)[-1]
    last = int(r["epoch"].max())
    active = at(r, f"mean_slope/{layer}", last)
    dead_column = f"dead_fraction/{layer}"
    dead = at(r, dead_column, last) if dead_column in r else None
    relu, sigmoid = h["relu"], h["sigmoid"]
    best = int(relu.loc[relu["val_loss"].idxmin(), "epoch"])
    rise = float(relu["val_loss"].iloc[-1] - relu["val_loss"].min())
    sigmoid_rise = float(sigmoid["val_loss"].iloc[-1] - sigmoid["val_loss"].min())
    text = (
        f"ReLU's {labels[layer]} layer is sparse: at epoch {last} only {active:.0%} of its "
        "outputs were non-zero"
        + (f", and {dead:.0%} of its units were dead (zero for every probe image)" if dead else "")
        + f". Its validation loss was lowest at epoch {best} and rose by {rise:.3f} from there "
        f"to epoch {last}; sigmoid's rose by {sigmoid_rise:.3f} (0 = lowest at the last epoch)."
    )
    overfits_sooner = rise > sigmoid_rise
    if overfits_sooner:
        text += " Sparse, and yet the sooner to overfit."
    verdict = NOT_SUPPORTED if overfits_sooner else MIXED
    return Claim("ReLU's sparsity makes learning efficient and curbs overfitting.", verdict, text)


def depth(ev: Evidence) -> Claim:
    claim = "Sigmoid is fine in shallow networks; ReLU is for deep ones."
    plain = {c.depth: c for c in ev.cells if not c.batch_norm}
    if len(plain) < 2:
        return Claim(claim, NOT_TESTED, "The depth study is not in this checkout.")
    shallow, deep = plain[min(plain)], plain[max(plain)]

    def acc(cell: Cell, activation: str) -> str:
        return cell.evaluation.test[activation].accuracy.format()

    gap_shallow, gap_deep = cell_gap(shallow), cell_gap(deep)
    text = (
        f"Depth study ({shallow.seeds} seeds per cell; depth = convolution blocks = hidden dense "
        f"layers): at depth {shallow.depth} sigmoid scored {acc(shallow, 'sigmoid')} and ReLU "
        f"{acc(shallow, 'relu')}; at depth {deep.depth} sigmoid {acc(deep, 'sigmoid')} and ReLU "
        f"{acc(deep, 'relu')}. ReLU − sigmoid, paired by seed: "
        f"{gap_shallow.format(signed=True)} at depth {shallow.depth}, "
        f"{gap_deep.format(signed=True)} at depth {deep.depth}."
    )
    shallow_fine = gap_shallow.ci_low is not None and gap_shallow.ci_low <= 0
    widens = gap_deep.mean > gap_shallow.mean
    verdict = SUPPORTED if widens and shallow_fine else MIXED if widens else NOT_SUPPORTED
    if widens and not shallow_fine:
        text += (
            " Sigmoid falls further behind with depth, but it is well behind already at depth 1."
        )
    elif not widens:
        text += " The gap does not grow with depth here."
    return Claim(claim, verdict, text)


def output_layer() -> Claim:
    return Claim(
        "Sigmoid belongs in the output layer of a binary classifier.",
        NOT_TESTED,
        "This task has ten classes, and every network here ends in a softmax over them; no binary "
        "classifier was trained.",
    )


def settle(ev: Evidence) -> list[Claim]:
    """Every claim of the tutorial, in its order, with a verdict and the measured evidence."""
    return [
        vanishing_gradient(ev),
        not_zero_centred(ev),
        relu_keeps_gradient(ev),
        starts_faster(ev),
        generalises(ev),
        cheaper(),
        sparsity(ev),
        depth(ev),
        output_layer(),
    ]


def reconcile(ev: Evidence) -> list[str]:
    """The numbers that seem to contradict the vanishing-gradient story, explained from others."""
    s, r = ev.sigmoid, ev.relu
    labels = layer_labels(s)
    kernels = kernel_layers(s)
    hidden = hidden_layers(s)
    lines = []
    if len(kernels) >= 3:
        first, dense = kernels[0], kernels[-2]
        g_s, g_r = at(s, f"grad_norm/{dense}/kernel", 0), at(r, f"grad_norm/{dense}/kernel", 0)
        feeding = hidden[-2] if len(hidden) >= 2 else hidden[0]
        in_s = at(s, f"mean_activation/{feeding}", 0)
        in_r = at(r, f"mean_activation/{feeding}", 0)
        lines.append(
            f"**The {labels[dense]} layer's gradient is larger with sigmoid** ({g_s:.3g} against "
            f"{g_r:.3g} at initialisation). A layer's weight gradient is the error reaching it "
            f"times its inputs. The {labels[dense]} layer's inputs are the {labels[feeding]}'s "
            f"outputs: with sigmoid all positive and averaging {in_s:.2f}, with ReLU "
            f"{in_r:.3f}, {ratio(in_s, in_r)} smaller. Large inputs outweigh the smaller error "
            f"there. The {labels[first]} reads the images themselves, the same for both, so its "
            "gradient shows the attenuation alone; at initialisation the output layer's gradient "
            "is larger with sigmoid for the same reason."
        )
    layer = hidden[-1]
    sat, dead = f"saturated_fraction/{layer}", f"dead_fraction/{layer}"
    if sat in s and dead in r:
        slope_s, slope_r = at(s, f"mean_slope/{layer}", 1), at(r, f"mean_slope/{layer}", 1)
        lines.append(
            f"**Saturated sigmoid units against dead ReLU units.** After epoch 1, "
            f"{at(s, sat, 1):.1%} of sigmoid's {labels[layer]} outputs sat in its flat tails, and "
            f"{at(r, dead, 1):.1%} of ReLU's {labels[layer]} units were dead. A dead unit passes "
            "no gradient, but a live ReLU unit passes all of it (slope 1), while a saturated "
            "sigmoid unit passes a sliver. The mean slope puts both on one scale: "
            f"{slope_r:.3f} for ReLU against {slope_s:.4f} for sigmoid, {ratio(slope_r, slope_s)} "
            "more gradient through ReLU's layer in spite of its dead units."
        )
    tanh, sigmoid = ev.activation_study.get("tanh"), ev.activation_study.get("sigmoid")
    if tanh and sigmoid:
        lines.append(
            "**tanh saturates too, yet learns from the first epoch.** tanh(z) = 2σ(2z) − 1 is "
            "sigmoid stretched to (−1, 1): the same flat tails, but centred on 0 and with a slope "
            f"that peaks at 1 instead of {SIGMOID_PEAK_SLOPE}. Each layer a gradient crosses "
            "costs it a factor of that slope, so a sigmoid network loses at least 4× per layer "
            f"where tanh need not. Over {tanh.seeds} seeds (seven-activation study) tanh scored "
            f"{tanh.accuracy.format()} and sigmoid {sigmoid.accuracy.format()}."
        )
    return lines


def when_to_use(ev: Evidence) -> list[str]:
    """Advice, each sentence backed by a number from this run or a committed study, or marked
    as the tutorial's advice, untested here."""
    run = ev.run
    test = run.evaluation.test
    lines = [
        f"**Hidden layers: ReLU over sigmoid.** ReLU led by "
        f"{(test['relu'].accuracy.mean - test['sigmoid'].accuracy.mean) * 100:.1f} points of test "
        "accuracy in this run"
        + (
            f", and by {cell_gap(cell).format(signed=True)} paired over {cell.seeds} seeds of the "
            "same network in the depth study."
            if (cell := ev.tutorial_cell())
            else "."
        )
    ]
    family = {a: ev.activation_study[a] for a in RELU_FAMILY if a in ev.activation_study}
    if len(family) > 1:
        means = [s.accuracy.mean for s in family.values()]
        lines.append(
            f"**Any of the ReLU family will do on a network this size.** ReLU, leaky ReLU, ELU, "
            f"GELU and swish finished within {(max(means) - min(means)) * 100:.1f} points of each "
            f"other over {next(iter(family.values())).seeds} seeds (seven-activation study)."
        )
    if cell is not None:
        escapes = cell.evaluation.training["sigmoid"].escape_epoch_per_seed
        lines.append(
            "**If you keep sigmoid in hidden layers, run several seeds and watch the first "
            f"epochs.** Its escape epoch over {cell.seeds} seeds of the tutorial's network was "
            f"{_escapes(escapes)}: how long it sits at chance is luck of the draw."
        )
    with_bn = {(c.depth, c.batch_norm): c for c in ev.cells}
    for d in sorted({c.depth for c in ev.cells}):
        plain, bn = with_bn.get((d, False)), with_bn.get((d, True))
        if plain and bn:
            lines.append(
                f"**Batch normalisation at depth {d}:** sigmoid "
                f"{plain.evaluation.test['sigmoid'].accuracy.format()} without, "
                f"{bn.evaluation.test['sigmoid'].accuracy.format()} with; ReLU "
                f"{plain.evaluation.test['relu'].accuracy.format()} without, "
                f"{bn.evaluation.test['relu'].accuracy.format()} with (depth study, "
                f"{bn.seeds} seeds)."
            )
    tanh, sigmoid = ev.activation_study.get("tanh"), ev.activation_study.get("sigmoid")
    if tanh and sigmoid:
        lines.append(
            f"**Need an S-shaped, bounded activation? tanh over sigmoid:** "
            f"{tanh.accuracy.format()} against {sigmoid.accuracy.format()} over {tanh.seeds} "
            "seeds (seven-activation study)."
        )
    lines.append(
        "**Output layer:** softmax for one class out of several, as every network here uses; "
        "sigmoid for a yes/no output or for labels that are not exclusive. That is the "
        "tutorial's advice; it is not tested here."
    )
    return lines
