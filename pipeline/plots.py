"""Pure figure builders: data in, matplotlib Figure out (no pyplot state, no files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline import probe_columns as columns
from pipeline.cifar import CIFAR10


def _palette(activations) -> dict[str, str]:
    """A colour per activation, from its place in the run (sigmoid, ReLU, then the extras in
    params order, as every figure receives them): matplotlib's default cycle, so any activation
    gets one and the same activation the same one in every figure of a run."""
    return {name: f"C{i % 10}" for i, name in enumerate(activations)}


def activation_figure() -> Figure:
    """Sigmoid and ReLU with their derivatives: sigmoid's slope never exceeds 0.25."""
    x = np.linspace(-6, 6, 601)
    sigmoid = 1 / (1 + np.exp(-x))
    curves = {
        "sigmoid": (sigmoid, sigmoid * (1 - sigmoid)),
        "relu": (np.maximum(x, 0), (x > 0).astype(float)),
    }
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    colors = _palette(curves)
    for ax, (name, (value, slope)) in zip(fig.subplots(1, 2), curves.items(), strict=True):
        ax.plot(x, value, color=colors[name], label=name)
        ax.plot(x, slope, color=colors[name], linestyle="--", label=f"{name}' (derivative)")
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_title(name)
        ax.set_xlabel("input")
        ax.legend(loc="upper left")
        ax.grid(alpha=0.3)
    return fig


def sample_grid(
    images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], per_class: int = 3
) -> Figure:
    """The first `per_class` images of each class, one column per class."""
    n_classes = len(class_names)
    fig = Figure(figsize=(1.2 * n_classes, 1.25 * per_class + 0.4), layout="constrained")
    axes = fig.subplots(per_class, n_classes, squeeze=False)
    for c, name in enumerate(class_names):
        chosen = np.flatnonzero(labels == c)[:per_class]
        for row in range(per_class):
            ax = axes[row, c]
            ax.axis("off")
            if row < len(chosen):
                ax.imshow(images[chosen[row]], interpolation="nearest")
            if row == 0:
                ax.set_title(name, fontsize=9)
    return fig


def curves_figure(
    histories: Mapping[str, pd.DataFrame],
    seed_histories: Mapping[str, pd.DataFrame] | None = None,
    chance: float = CIFAR10.chance,
) -> Figure:
    """Validation accuracy and loss per epoch, every model on each chart (training dashed).

    With several seeds, `histories` are the means and a band spans the seeds' lowest to highest.
    """
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    colors = _palette(histories)
    for activation, history in histories.items():
        color = colors[activation]
        seeds = (seed_histories or {}).get(activation)
        several = seeds is not None and seeds["seed"].nunique() > 1
        spread = seeds.groupby("epoch").agg(["min", "max"]) if several else None
        epochs = history["epoch"]
        for ax, metric in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            if spread is not None:
                low, high = spread[f"val_{metric}"]["min"], spread[f"val_{metric}"]["max"]
                ax.fill_between(spread.index, low, high, color=color, alpha=0.2, linewidth=0)
            ax.plot(
                epochs,
                history[f"val_{metric}"],
                "o-",
                color=color,
                label=f"{activation} validation",
            )
            ax.plot(
                epochs,
                history[metric],
                "--",
                color=color,
                alpha=0.6,
                label=f"{activation} training",
            )
    ax_acc.axhline(
        chance, color="grey", linestyle=":", label=f"chance ({round(1 / chance)} classes)"
    )
    ax_acc.set(title="Accuracy per epoch", xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="cross-entropy")
    ax_loss.set_ylim(bottom=0)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_below(fig, (ax_acc, ax_loss))
    return fig


def examples_figure(images: np.ndarray, table: pd.DataFrame, activations: Sequence[str]) -> Figure:
    """Test images titled with the true class and each model's prediction (✓ when right)."""
    n = len(table)
    cols = min(n, 5) or 1
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(2.3 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (_, row) in zip(axes, table.iterrows(), strict=False):
        ax.imshow(images[int(row["index"])], interpolation="nearest")
        lines = [f"true: {row['true_class']}"]
        for activation in activations:
            guess = row[f"{activation}_predicted"]
            mark = "✓" if guess == row["true_class"] else "✗"
            lines.append(f"{activation}: {guess} {mark}")
        ax.set_title("\n".join(lines), fontsize=8)
    return fig


def confusion_figure(
    confusions: Mapping[str, np.ndarray], class_names: Sequence[str], seed: int
) -> Figure:
    """Row-normalised confusion matrices of one seed's models (rows: true class), in a grid of
    at most two columns with one colour scale; each cell in whole percent, large enough to read
    at a README's width."""
    cols = min(len(confusions), 2)
    rows = -(-len(confusions) // cols)
    fig = Figure(figsize=(5.2 * cols + 0.8, 5.2 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[len(confusions) :]:
        ax.axis("off")
    image = None
    for ax, (activation, counts) in zip(axes, confusions.items(), strict=False):
        counts = np.asarray(counts, dtype=float)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(class_names)), class_names, rotation=60, fontsize=10)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=10)
        ax.set(title=f"{activation}, seed {seed}", xlabel="predicted", ylabel="true class")
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                ax.text(
                    j,
                    i,
                    f"{rates[i, j]:.0%}".removesuffix("%"),
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    fig.colorbar(image, ax=axes.tolist(), shrink=0.6, label="share of the true class (cells: %)")
    return fig


def _legend_below(fig: Figure, axes) -> None:
    """One legend for the whole figure, under the charts, so no line hides behind it."""
    handles, labels = {}, []
    for ax in np.atleast_1d(axes).ravel():
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    if labels:
        fig.legend(
            [handles[k] for k in labels],
            labels,
            loc="outside lower center",
            ncol=min(len(labels), 5),
        )


def gradient_ratio_figure(diagnostics: Mapping[str, pd.DataFrame]) -> Figure:
    """Sigmoid's weight gradient over ReLU's, per layer against epoch, on one log axis: below 1,
    less gradient reaches that layer with sigmoid."""
    s, r = diagnostics["sigmoid"], diagnostics["relu"]
    labels = columns.layer_labels(s)
    layers = sorted(
        columns.kernel_layers(s), key=lambda n: (not n.startswith("conv"), columns.keras_index(n))
    )
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    for style, layer in zip(["o-", "s--", "^:", "d-.", "v-", "p--"], layers, strict=False):
        kernel = columns.kernel(layer)
        ax.plot(s["epoch"], s[kernel] / r[kernel], style, label=labels.get(layer, layer))
    ax.axhline(1, color="grey", linestyle=":", label="as large as ReLU's")
    ax.set_yscale("log")
    ax.set(
        title="Weight gradient with sigmoid ÷ with ReLU, per layer",
        xlabel="epoch (0 = initialisation)",
        ylabel="ratio (log scale; below 1: smaller with sigmoid)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_below(fig, ax)
    return fig


def plateau_figure(
    steps: Mapping[str, pd.DataFrame], labels: Mapping[str, str], threshold: float
) -> Figure:
    """Through the first steps, on one step axis: validation accuracy, each hidden layer's mean
    slope, and its share of flat inputs (sigmoid: saturated; ReLU: negative, inactive).
    `labels` names the layers (layer_labels of a diagnostics frame, which knows every layer)."""
    fig = Figure(figsize=(10, 9), layout="constrained")
    ax_acc, ax_slope, ax_flat = fig.subplots(3, 1, sharex=True)
    colors = _palette(steps)
    styles = ["-", "--", ":", "-."]
    for activation, frame in steps.items():
        color = colors[activation]
        ax_acc.plot(frame["step"], frame["val_accuracy"], ".-", color=color, label=activation)
        for style, layer in zip(styles, columns.hidden_layers(frame), strict=False):
            name = f"{activation}, {labels.get(layer, layer)}"
            slope, flat = (columns.column(q, layer) for q in (columns.MEAN_SLOPE, columns.FLAT))
            ax_slope.plot(frame["step"], frame[slope], style, color=color, label=name)
            ax_flat.plot(frame["step"], frame[flat], style, color=color, label=name)
    ax_acc.axhline(
        threshold, color="black", linestyle="--", linewidth=0.8, label=f"escape ({threshold:.2f})"
    )
    ax_acc.set(title="Validation accuracy (1,000 images)", ylabel="accuracy", ylim=(0, None))
    ax_slope.set_yscale("log")
    ax_slope.set(
        title="Mean slope of the activation at each hidden layer's inputs (gradient passed back)",
        ylabel="mean f'(z), log scale",
    )
    ax_flat.set(
        title="Flat inputs: saturated (sigmoid: σ below 0.01 or above 0.99) or inactive (ReLU: negative)",
        ylabel="share of inputs",
        xlabel="training step",
        ylim=(-0.02, 1.02),
    )
    for ax in (ax_acc, ax_slope, ax_flat):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def study_seeds_figure(
    columns: Mapping[str, Mapping[int, float]], stuck: Mapping[str, Mapping[int, bool]]
) -> Figure:
    """One dot per seed and arm (hollow: a seed that never left chance), the median as a bar."""
    fig = Figure(figsize=(max(8, 0.9 * len(columns) + 2), 4.6), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only, so dots with equal values stay visible
    for x, (label, values) in enumerate(columns.items()):
        seeds = list(values)
        y = np.array([values[s] for s in seeds])
        hollow = np.array([stuck.get(label, {}).get(s, False) for s in seeds])
        jitter = x + rng.uniform(-0.15, 0.15, len(y))
        ax.scatter(jitter[~hollow], y[~hollow], color="tab:blue", zorder=3)
        ax.scatter(jitter[hollow], y[hollow], facecolors="none", edgecolors="tab:red", zorder=3)
        ax.hlines(np.median(y), x - 0.3, x + 0.3, color="black", linewidth=2, zorder=4)
    ax.scatter([], [], color="tab:blue", label="a seed")
    ax.scatter(
        [], [], facecolors="none", edgecolors="tab:red", label="a seed that never left chance"
    )
    ax.plot([], [], color="black", linewidth=2, label="median")
    ax.axhline(CIFAR10.chance, color="grey", linestyle=":", label=f"chance ({CIFAR10.chance:.2f})")
    ax.set_xticks(range(len(columns)), list(columns), rotation=40, ha="right", fontsize=8)
    ax.set(
        title="Claims study: test accuracy of every seed (ten-class arms)",
        ylabel="test accuracy",
        ylim=(0, 1),
    )
    ax.grid(alpha=0.3, axis="y")
    _legend_below(fig, ax)
    return fig


def units_figure(diagnostics: Mapping[str, pd.DataFrame], chance: float = CIFAR10.chance) -> Figure:
    """Per hidden layer: the activation's mean slope at its inputs, saturated and dead shares;
    and the plateau share of validation predictions."""
    fig = Figure(figsize=(12, 8), layout="constrained")
    (ax_slope, ax_plateau), (ax_sat, ax_dead) = fig.subplots(2, 2)
    styles = ["o-", "s--", "^:", "d-."]
    colors = _palette(diagnostics)
    for activation, frame in diagnostics.items():
        color = colors[activation]
        labels = columns.layer_labels(frame)
        panels = ((ax_slope, columns.MEAN_SLOPE), (ax_sat, columns.FLAT), (ax_dead, columns.DEAD))
        for ax, quantity in panels:
            for style, layer in zip(styles, columns.layers(frame, quantity), strict=False):
                ax.plot(
                    frame["epoch"],
                    frame[columns.column(quantity, layer)],
                    style,
                    color=color,
                    label=f"{activation}, {labels.get(layer, layer)}",
                )
        ax_plateau.plot(frame["epoch"], frame["plateau_share"], "o-", color=color, label=activation)
    ax_slope.set(
        title="Mean slope of the activation at each layer's inputs",
        ylabel="mean f'(z) (ReLU: share of active inputs)",
    )
    ax_sat.set(
        title="Flat inputs: slope below 4% of its peak\n(sigmoid: saturated; ReLU: negative, inactive)",
        ylabel="share of inputs",
    )
    ax_dead.set(
        title="Units flat on every probe image\n(ReLU: dead; sigmoid: rounded to 0 in float32)",
        ylabel="share of units",
    )
    ax_plateau.set(title="Validation predictions on the most-predicted class", ylabel="share")
    ax_plateau.axhline(chance, color="grey", linestyle=":", label=f"balanced ({chance:.2f})")
    for ax in (ax_slope, ax_sat, ax_dead, ax_plateau):
        ax.set_xlabel("epoch (0 = initialisation)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_lines():
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            ax.text(
                0.5, 0.5, "not measured for these activations", ha="center", transform=ax.transAxes
            )
    return fig


def step_curve_figure(
    steps: Mapping[str, pd.DataFrame],
    seed_steps: Mapping[str, pd.DataFrame],
    threshold: float,
    chance: float = CIFAR10.chance,
) -> Figure:
    """Validation accuracy through the first epochs, step by step: one thin line per seed, a
    thick one for their mean when there are several."""
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    ax = fig.subplots()
    colors = _palette(steps)
    for activation, mean in steps.items():
        color = colors[activation]
        seeds = seed_steps.get(activation)
        several = seeds is not None and seeds["seed"].nunique() > 1
        if several:
            for _, one in seeds.groupby("seed"):
                ax.plot(one["epoch"], one["val_accuracy"], color=color, alpha=0.35, linewidth=1)
        label = f"{activation} (mean of {seeds['seed'].nunique()} seeds)" if several else activation
        ax.plot(mean["epoch"], mean["val_accuracy"], ".-", color=color, linewidth=2, label=label)
    ax.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.2f})")
    ax.axhline(
        threshold, color="black", linestyle="--", linewidth=0.8, label=f"escape ({threshold})"
    )
    ax.set(
        title="The first epochs, step by step",
        xlabel="epoch (fraction of the training set seen)",
        ylabel="validation accuracy (1,000 images)",
        ylim=(0, None),
    )
    ax.grid(alpha=0.3)
    _legend_below(fig, ax)
    return fig


def seed_strip_figure(
    per_seed: Mapping[str, Sequence[float]], chance: float = CIFAR10.chance
) -> Figure:
    """Test accuracy of every seed (dots) and their median (bar), one column per activation: a
    seed stuck at chance pulls a mean to where no run is."""
    fig = Figure(figsize=(1.4 * max(len(per_seed), 2) + 2, 3.8), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only, so dots with equal values stay visible
    colors = _palette(per_seed)
    for x, (activation, values) in enumerate(per_seed.items()):
        values = np.asarray(values, dtype=float)
        ax.scatter(
            x + rng.uniform(-0.12, 0.12, len(values)),
            values,
            color=colors[activation],
            alpha=0.8,
            zorder=3,
        )
        ax.hlines(np.median(values), x - 0.3, x + 0.3, color="black", linewidth=2, zorder=4)
    ax.set_xticks(range(len(per_seed)), list(per_seed))
    several = any(len(v) > 1 for v in per_seed.values())
    title = (
        "Test accuracy per seed (bar: median over seeds)" if several else "Test accuracy (one seed)"
    )
    ax.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.2f})")
    ax.set(title=title, ylabel="test accuracy", ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def every_curve_figure(curves: Mapping[str, Sequence[Sequence[float]]], threshold: float) -> Figure:
    """Every run's validation accuracy per epoch (thin lines), coloured by activation."""
    fig = Figure(figsize=(9, 4.8), layout="constrained")
    ax = fig.subplots()
    colors = _palette(curves)
    for activation, runs in curves.items():
        for i, values in enumerate(runs):
            label = f"{activation} ({len(runs)} runs)" if i == 0 else None
            epochs = range(1, len(values) + 1)
            ax.plot(epochs, values, color=colors[activation], alpha=0.5, label=label)
    ax.axhline(CIFAR10.chance, color="grey", linestyle=":", label=f"chance ({CIFAR10.chance:.2f})")
    ax.axhline(
        threshold, color="black", linestyle="--", linewidth=0.8, label=f"escape ({threshold:.2f})"
    )
    ax.set(title="Every run's validation curve", xlabel="epoch", ylabel="validation accuracy")
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    _legend_below(fig, ax)
    return fig


def escape_count_figure(counts: Mapping[str, Mapping[str, int]]) -> Figure:
    """How many runs left chance in each epoch (and never), one bar group per activation."""
    fig = Figure(figsize=(9, 3.8), layout="constrained")
    ax = fig.subplots()
    colors = _palette(counts)
    labels = list(next(iter(counts.values())))
    width = 0.8 / max(len(counts), 1)
    for i, (activation, per_epoch) in enumerate(counts.items()):
        x = np.arange(len(labels)) + i * width
        ax.bar(x, list(per_epoch.values()), width, label=activation, color=colors[activation])
    ax.set_xticks(np.arange(len(labels)) + width * (len(counts) - 1) / 2, labels)
    ax.set(title="When each run left chance", xlabel="escape epoch", ylabel="runs")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right")
    return fig
