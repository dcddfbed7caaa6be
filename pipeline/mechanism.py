"""Why sigmoid struggles, read off this run's own diagnostics: per layer, the gradient, the
activation's slope and its outputs. Pure functions: frames in, numbers and sentences out."""

from __future__ import annotations

import pandas as pd

from pipeline import probe_columns as columns
from pipeline.decide import factor
from pipeline.probe_columns import hidden_layers, kernel_layers, layer_labels

SIGMOID_PEAK_SLOPE = 0.25  # σ'(0): the largest slope sigmoid ever has


def value_at_epoch(frame: pd.DataFrame, column: str, epoch: int) -> float:
    return float(frame.loc[frame["epoch"] == epoch, column].iloc[0])


def layer_name(label: str) -> str:
    """'hidden dense' → 'hidden dense layer'; a convolution is named as it is."""
    return label if "convolution" in label else f"{label} layer"


def ratio(a: float, b: float) -> str:
    return factor(a / b, 1) if b > 0 else "infinitely"


def reconcile(sigmoid: pd.DataFrame, relu: pd.DataFrame) -> list[str]:
    """The numbers that seem to contradict the vanishing-gradient story, explained from others."""
    s, r = sigmoid, relu
    labels = layer_labels(s)
    kernels = kernel_layers(s)
    hidden = hidden_layers(s)
    lines = []
    if len(kernels) >= 3:
        first, dense = kernels[0], kernels[-2]
        g_s, g_r = (
            value_at_epoch(s, columns.kernel(dense), 0),
            value_at_epoch(r, columns.kernel(dense), 0),
        )
        feeding = hidden[-2] if len(hidden) >= 2 else hidden[0]
        in_s = value_at_epoch(s, columns.column(columns.MEAN_OUTPUT, feeding), 0)
        in_r = value_at_epoch(r, columns.column(columns.MEAN_OUTPUT, feeding), 0)
        if g_s > g_r:
            lines.append(
                f"**The {labels[dense]} layer's gradient is larger with sigmoid** ({g_s:.3g} "
                f"against {g_r:.3g} at initialisation). A layer's weight gradient is the error "
                f"reaching it times its inputs. The {labels[dense]} layer's inputs are the "
                f"{labels[feeding]}'s outputs: with sigmoid all positive and averaging "
                f"{in_s:.2f}, with ReLU {in_r:.3f}, {ratio(in_s, in_r)} smaller. Large inputs "
                f"outweigh the smaller error there. The {labels[first]} reads the images "
                "themselves, the same for both, so its gradient shows the attenuation alone."
            )
    layer = hidden[-1]
    sat, dead = columns.column(columns.FLAT, layer), columns.column(columns.DEAD, layer)
    if sat in s and sat in r and dead in s and dead in r:
        slope = columns.column(columns.MEAN_SLOPE, layer)
        slope_s, slope_r = value_at_epoch(s, slope, 1), value_at_epoch(r, slope, 1)
        lines.append(
            f"**Saturated sigmoid inputs against inactive ReLU inputs.** After epoch 1, "
            f"{value_at_epoch(s, sat, 1):.1%} of the inputs to sigmoid's {labels[layer]} layer sat in its "
            f"flat tails, and {value_at_epoch(r, sat, 1):.1%} of ReLU's were negative, where ReLU is "
            f"inactive (its output and slope are exactly 0); {value_at_epoch(r, dead, 1):.1%} of ReLU's "
            f"units were inactive on every probe image (dead), against {value_at_epoch(s, dead, 1):.1%} of "
            "sigmoid's, whose slope is never exactly 0 but can round to 0 in float32 far out in "
            "its tails. An inactive input passes no gradient, but an active ReLU input passes all "
            "of it (slope 1), while a saturated sigmoid input passes a sliver. The mean slope "
            f"puts both on one scale: {slope_r:.3g} for ReLU against {slope_s:.3g} for sigmoid, "
            f"{ratio(slope_r, slope_s)} more gradient through ReLU's layer."
        )
    return lines


def first_step_below(steps: pd.DataFrame, column: str, share: float) -> int | None:
    """The first measured step at which `column` fell below `share` of its value at step 0."""
    start = float(steps[column].iloc[0])
    below = steps.loc[steps[column] < share * start, "step"]
    return int(below.iloc[0]) if len(below) else None


def order_of_events(
    steps: pd.DataFrame,
    escape_step: int | None,
    activation: str,
    labels: dict[str, str],
    curve: str = "seed-mean curve",
) -> str | None:
    """What happened first through the plateau, from one step curve with layer columns: when each
    hidden layer's mean slope fell to a tenth of its start, against when accuracy left chance.
    `labels` names the layers (layer_labels of the run's diagnostics)."""
    layers = hidden_layers(steps)
    if not layers:
        return None  # a step curve from before the layers were probed step by step
    falls = []
    for layer in layers:
        column = columns.column(columns.MEAN_SLOPE, layer)
        step = first_step_below(steps, column, 0.1)
        start, low = float(steps[column].iloc[0]), float(steps[column].min())
        when = f"by step {step}" if step is not None else "at no measured step"
        falls.append(
            f"the {layer_name(labels.get(layer, layer))}'s mean slope went from {start:.3g} to a "
            f"low of {low:.3g}, below a tenth of its start {when}"
        )
    measured = int(steps["step"].max())
    escape = (
        f"validation accuracy left chance at step {escape_step}"
        if escape_step is not None
        else f"validation accuracy had not left chance by step {measured:,}"
    )
    return f"**{activation}**, {curve}: " + "; ".join(falls) + f"; {escape}."


def collapsed_before_escape(steps: pd.DataFrame, escape_step: int | None) -> bool:
    """Whether some hidden layer's mean slope fell below a tenth of its start before accuracy
    left chance (or while it never did)."""
    for layer in hidden_layers(steps):
        column = columns.column(columns.MEAN_SLOPE, layer)
        fell = first_step_below(steps, column, 0.1)
        if fell is not None and (escape_step is None or fell < escape_step):
            return True
    return False


def adam_note(collapsed_first: bool) -> str:
    """Adam rescales each weight's step, so what the gradient ratio proves is limited; the order
    of events says more, and this says which way it went."""
    text = (
        "**Why a smaller gradient is not the whole story under Adam.** Adam divides each "
        "weight's gradient by a running average of that gradient's own size, so a gradient that "
        "is smaller by a constant factor gives the same steps; the gradient ratio at "
        "initialisation is weak evidence on its own. A saturated layer does something Adam "
        "cannot undo: with a slope near zero at most inputs, the little gradient that reaches "
        "the layers below carries the signal of few images. "
    )
    if collapsed_first:
        return text + (
            "Here sigmoid's hidden dense slope collapsed while its accuracy sat at chance (both "
            "from the first measurement, 32 steps in: finer steps would be needed to say which "
            "came first within them), the order this explanation needs. Another explanation "
            "fits the same numbers: every input of the dense layer is positive, so Adam's first "
            "steps, all of about the same size, push many of a unit's 7,200 weights the same "
            "way and can saturate it; that is claim 2's question, answered by the claims "
            "study's centring-slope cell (claim 2 above)."
        )
    return text + (
        "Here sigmoid's slope did not collapse before its accuracy left chance, so this run does "
        "not show that order."
    )
