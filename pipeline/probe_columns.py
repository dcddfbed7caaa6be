"""The diagnostics' columns, named once: `<quantity>/<layer>` (and `grad_norm/<layer>/kernel`),
written by training's probe and read by evaluate, the report and its figures."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

GRADIENT = "grad_norm"  # L2 norm of the loss gradient of a variable: grad_norm/<layer>/kernel
MEAN_OUTPUT = "mean_activation"  # the layer's mean output
MEAN_SLOPE = "mean_slope"  # the activation's mean derivative at the layer's inputs
FLAT = "saturated_fraction"  # share of inputs where the slope is below FLAT_SHARE of its peak
DEAD = "dead_fraction"  # share of units flat for every probe image


def column(quantity: str, layer: str) -> str:
    return f"{quantity}/{layer}"


def kernel(layer: str) -> str:
    """The column of a layer's weight gradient."""
    return f"{GRADIENT}/{layer}/kernel"


def of(quantity: str, column_name: str) -> bool:
    return column_name.startswith(f"{quantity}/")


def layers(frame: pd.DataFrame | Iterable[str], quantity: str) -> list[str]:
    """The layers that `quantity` is measured for, in column order."""
    columns = frame.columns if isinstance(frame, pd.DataFrame) else frame
    return [c.removeprefix(f"{quantity}/") for c in columns if of(quantity, c)]


def hidden_layers(frame: pd.DataFrame) -> list[str]:
    """The layers whose outputs pass through the activation, in the network's order."""
    return layers(frame, MEAN_SLOPE)


def kernel_layers(frame: pd.DataFrame) -> list[str]:
    """The layers with a weight kernel (convolutions, dense layers, the output), in column order."""
    return [
        name.removesuffix("/kernel") for name in layers(frame, GRADIENT) if name.endswith("/kernel")
    ]


def keras_index(name: str) -> int:
    """Keras' numbering: dense → 0, dense_2 → 2."""
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def layer_labels(frame: pd.DataFrame) -> dict[str, str]:
    """Keras layer names in a diagnostics frame → names a reader knows: first convolution,
    hidden dense, output (numbered when there are several). An activation layer (`dense_act`,
    with batch normalisation) takes the name of the layer it follows."""
    layers = {c.split("/")[1] for c in frame.columns if "/" in c}
    bases = {name: name.removesuffix("_act").removesuffix("_bn") for name in layers}
    convs = sorted({b for b in bases.values() if b.startswith("conv2d")}, key=keras_index)
    denses = sorted({b for b in bases.values() if b.startswith("dense")}, key=keras_index)
    labels = {}
    for i, name in enumerate(convs):
        labels[name] = "first convolution" if len(convs) == 1 else f"convolution {i + 1}"
    for i, name in enumerate(denses[:-1]):
        labels[name] = "hidden dense" if len(denses) == 2 else f"hidden dense {i + 1}"
    if denses:
        labels[denses[-1]] = "output"
    return {name: labels.get(base, name) for name, base in bases.items()}
