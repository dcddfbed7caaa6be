"""Evidence measured during training: gradient flow, saturation, dead units, the plateau.

Measured on a fixed probe batch of training images (the same every epoch) at initialisation
(epoch 0) and after every epoch, by a Keras callback on the model being trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline import activations
from pipeline import probe_columns as columns
from pipeline.metrics import majority_share
from pipeline.model import TWO_WAY

# An input is "flat" (the unit is saturated there) where the activation's slope is below this
# share of its peak slope: sigmoid's σ′ = σ(1 − σ) is below 0.0396 · σ′(0) exactly where σ is
# below 0.01 or above 0.99, the bounds this project used for sigmoid before.
FLAT_SHARE = 0.0396
# Where the peak slope is looked for, and how finely.
PEAK_GRID = np.linspace(-20, 20, 40_001, dtype=np.float32)


def peak_slope(function) -> float:
    """The largest slope f′(z) of the activation over z in [-20, 20]."""
    return float(tf.reduce_max(local_slope(function, tf.constant(PEAK_GRID))))


def slope_stats(slopes: np.ndarray, peak: float) -> dict[str, float]:
    """What one hidden layer's local slopes f′(z), shape (images, units…), say of its units.

    saturated_fraction: share of inputs where the slope is below FLAT_SHARE of the peak.
    dead_fraction: share of units whose slope is 0 for every probe image (they pass no gradient).
    """
    slopes = np.asarray(slopes)
    per_unit = slopes.reshape(len(slopes), -1)
    return {
        columns.FLAT: float(np.mean(slopes < FLAT_SHARE * peak)),
        columns.DEAD: float(np.mean(np.all(per_unit == 0, axis=0))),
    }


def probe_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A fixed choice of `size` probe images, drawn uniformly at random by `seed`."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(labels), size=min(size, len(labels)), replace=False))


def probe_batch(
    data: tuple[np.ndarray, np.ndarray], size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The (images, labels) the diagnostics probe every epoch: `size` of `data`, fixed by `seed`."""
    chosen = probe_indices(data[1], size, seed)
    return data[0][chosen], data[1][chosen]


def pre_activation(layer, inputs):
    """What `layer` applies its activation to: an Activation layer's input, or the linear part
    of a Dense or convolution layer with a fused activation."""
    if isinstance(layer, keras.layers.Activation):
        return inputs
    if isinstance(layer, keras.layers.Dense):
        z = keras.ops.matmul(inputs, layer.kernel)
    else:
        z = layer.convolution_op(inputs, layer.kernel)
    return z if layer.bias is None else z + layer.bias


def local_slope(function, z):
    """f'(z) elementwise, by automatic differentiation: the factor by which this layer scales
    every gradient passing back through it."""
    with tf.GradientTape() as tape:
        tape.watch(z)
        outputs = function(z)
    return tape.gradient(outputs, z)


def make_probe(model, activation: str) -> Callable[[np.ndarray, np.ndarray], dict[str, float]]:
    """A function (images, labels) → {metric name: value} for `model`'s current weights.

    Names say layer and quantity: `grad_norm/dense/kernel`, `saturated_fraction/conv2d`,
    `mean_slope/dense` (the mean of the activation's derivative at that layer's inputs), …
    """
    function = activations.resolve(activation)
    peak = peak_slope(function)
    hidden = hidden_activation_layers(model, function)
    with_outputs = keras.Model(
        model.inputs,
        [layer.input for layer in hidden] + [layer.output for layer in hidden] + model.outputs,
    )
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function(reduce_retracing=True)
    def step(images, labels):
        with tf.GradientTape() as tape:
            *outputs, probabilities = with_outputs(images, training=False)
            loss = loss_fn(labels, probabilities)
        grads = tape.gradient(loss, model.trainable_variables)
        inputs, layer_outputs = outputs[: len(hidden)], outputs[len(hidden) :]
        slopes = [
            local_slope(function, pre_activation(layer, x))
            for layer, x in zip(hidden, inputs, strict=True)
        ]
        means = [tf.reduce_mean(slope) for slope in slopes]
        return layer_outputs, slopes, means, [tf.norm(g) for g in grads]

    names = [_variable_name(v) for v in model.trainable_variables]

    def probe(images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        layer_outputs, slopes, means, norms = step(tf.constant(images), tf.constant(labels))
        metrics = {
            columns.column(columns.GRADIENT, name): float(n)
            for name, n in zip(names, norms, strict=True)
        }
        for layer, outputs, slope, mean in zip(hidden, layer_outputs, slopes, means, strict=True):
            mean_output = np.asarray(outputs, dtype=np.float64).mean()  # float64: many values
            metrics[columns.column(columns.MEAN_OUTPUT, layer.name)] = float(mean_output)
            for key, value in slope_stats(slope.numpy(), peak).items():
                metrics[columns.column(key, layer.name)] = value
            metrics[columns.column(columns.MEAN_SLOPE, layer.name)] = float(mean)
        return metrics

    return probe


def hidden_activation_layers(model, function) -> list:
    """Layers whose output is `function` applied: fused in Conv2D/Dense, or an Activation layer;
    not the output layer (nor, after a sigmoid output, the fixed layer that follows it)."""
    body = model.layers[:-2] if model.layers[-1].name == TWO_WAY else model.layers[:-1]
    return [layer for layer in body if getattr(layer, "activation", None) is function]


def make_layer_probe(model, activation: str) -> Callable[[np.ndarray], dict[str, float]]:
    """A function images → {`mean_slope/<layer>`, `saturated_fraction/<layer>`} for every hidden
    layer, on `model`'s current weights: the step curve's layer columns, the same quantities as
    make_probe's, computed forward only and counted inside TensorFlow, so that measuring every
    few dozen steps stays cheap."""
    function = activations.resolve(activation)
    peak = peak_slope(function)
    hidden = hidden_activation_layers(model, function)
    layer_inputs = keras.Model(model.inputs, [layer.input for layer in hidden])

    @tf.function(reduce_retracing=True)
    def step(images):
        inputs = tf.nest.flatten(layer_inputs(images, training=False))
        slopes = [
            local_slope(function, pre_activation(layer, x))
            for layer, x in zip(hidden, inputs, strict=True)
        ]
        means = [tf.reduce_mean(slope) for slope in slopes]
        flat = [tf.math.count_nonzero(slope < FLAT_SHARE * peak) for slope in slopes]
        return means, flat, [tf.size(slope, out_type=tf.int64) for slope in slopes]

    def probe(images: np.ndarray) -> dict[str, float]:
        means, flat, sizes = step(tf.constant(images))
        metrics = {}
        for layer, mean, count, size in zip(hidden, means, flat, sizes, strict=True):
            metrics[columns.column(columns.FLAT, layer.name)] = int(count) / int(size)
            metrics[columns.column(columns.MEAN_SLOPE, layer.name)] = float(mean)
        return metrics

    return probe


def _variable_name(variable) -> str:
    """`dense_1/kernel` from a Keras 3 variable (path) or a TF-style name (`dense_1/kernel:0`)."""
    path = getattr(variable, "path", None) or variable.name
    parts = path.split(":")[0].split("/")
    return "/".join(parts[-2:])


class DiagnosticsCallback(keras.callbacks.Callback):
    """Probes the model it watches at epoch 0 (before training) and after every epoch.

    Keeps one row per epoch (`frame()`) and hands each to `log(epoch, metrics)` when given.
    """

    def __init__(
        self,
        activation: str,
        probe_data: tuple[np.ndarray, np.ndarray],
        val_images: np.ndarray,
        log: Callable[[int, Mapping[str, float]], None] | None = None,
        predict_batch: int = 256,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.probe_data = probe_data
        self.val_images = val_images
        self.log = log
        self.predict_batch = predict_batch
        self.rows: list[dict[str, float]] = []
        self.seconds = 0.0  # time spent measuring, to report the diagnostics' own cost
        self._probe: Callable[[np.ndarray, np.ndarray], dict[str, float]] | None = None
        self._layer_probe: Callable[[np.ndarray], dict[str, float]] | None = None

    def on_train_begin(self, logs=None) -> None:
        start = time.perf_counter()
        self._probe = make_probe(self.model, self.activation)
        self._layer_probe = make_layer_probe(self.model, self.activation)
        # Before training there is no validation pass to read the plateau from: predict once.
        outputs = self.model.predict(self.val_images, batch_size=self.predict_batch, verbose=0)
        outputs = np.asarray(outputs)
        plateau = majority_share(outputs.argmax(axis=1), outputs.shape[1])
        self.seconds += time.perf_counter() - start
        self._measure(0, plateau)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._measure(epoch + 1, float((logs or {})["val_plateau_share"]))

    def probe_now(self) -> dict[str, float]:
        """The probe batch measured on the model's current weights (after on_train_begin)."""
        return self._probe(*self.probe_data)

    def probe_layers(self) -> dict[str, float]:
        """Each hidden layer's mean slope and flat share on the probe batch, forward only."""
        return self._layer_probe(self.probe_data[0])

    def _measure(self, epoch: int, plateau: float) -> None:
        start = time.perf_counter()
        metrics = self.probe_now()
        metrics["plateau_share"] = plateau
        self.seconds += time.perf_counter() - start
        self.rows.append({"epoch": epoch, **metrics})
        if self.log:
            self.log(epoch, metrics)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


class StepCurveCallback(keras.callbacks.Callback):
    """The first `max_steps` training steps, measured after every call into TensorFlow (and
    before training): validation accuracy on fixed validation images, and, given `layers` (the
    run's DiagnosticsCallback), each hidden layer's mean slope and saturated share on its probe
    batch. An escape *step*, which an escape epoch of 1 hides, and the order of events through
    the plateau. Keeps one row per measurement (`frame()`): step, epoch (fractional),
    val_accuracy, then `mean_slope/<layer>` and `saturated_fraction/<layer>`."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        max_steps: int,
        layers: DiagnosticsCallback | None = None,
        predict_batch: int = 500,
    ) -> None:
        super().__init__()
        self.images, self.labels = images, np.asarray(labels)
        self.max_steps = max_steps
        self.layers = layers
        self.predict_batch = predict_batch
        self.rows: list[dict[str, float]] = []
        self.seconds = 0.0
        self._epoch = 0

    def on_train_begin(self, logs=None) -> None:
        # A compiled forward pass: Keras' predict() sets up a data pipeline on every call, which
        # every few dozen steps would cost more than the arithmetic.
        model = self.model
        self._forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._measure(0)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        # `batch` is the last step of this call into TensorFlow (0-based within the epoch); Keras
        # counts a last, shorter call as a full one.
        steps = self.params["steps"]
        step = self._epoch * steps + min(batch + 1, steps)
        if step <= self.max_steps:
            self._measure(step)

    def _measure(self, step: int) -> None:
        start = time.perf_counter()
        hits = 0
        for first in range(0, len(self.labels), self.predict_batch):
            batch = tf.constant(self.images[first : first + self.predict_batch])
            predicted = np.asarray(self._forward(batch)).argmax(axis=1)
            hits += int(np.sum(predicted == self.labels[first : first + self.predict_batch]))
        epoch = step / self.params["steps"]
        row = {"step": step, "epoch": round(epoch, 4), "val_accuracy": hits / len(self.labels)}
        if self.layers is not None:
            row |= self.layers.probe_layers()
        self.seconds += time.perf_counter() - start
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.rows)
        return frame if len(frame) else pd.DataFrame(columns=["step", "epoch", "val_accuracy"])
