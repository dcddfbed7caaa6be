"""The tutorial's CNN, built for any supported activation. Keras only, no I/O."""

from __future__ import annotations

import keras
from keras import layers

from pipeline import activations
from pipeline.cifar import IMAGE_SHAPE, N_CLASSES
from pipeline.params import ModelParams, check_geometry

# The tutorial's network: with these settings it has 923,914 trainable parameters.
TUTORIAL = ModelParams(
    conv_filters=32,
    kernel_size=3,
    pool_size=2,
    dense_units=128,
    conv_blocks=1,
    dense_layers=1,
    batch_norm=False,
    initializer="glorot_uniform",  # Keras' default for Conv2D and Dense
    output="softmax",
)
# The layer after a sigmoid output: p → (1 − p, p), so that every model gives one probability per
# class and everything downstream (accuracy, confusion, serving) reads both outputs alike.
TWO_WAY = "two_way"


@keras.saving.register_keras_serializable(package="pipeline")
class ToUnitRange(layers.Layer):
    """uint8 pixels → float32 in [0, 1], rounded exactly like the tutorial's `x / 255.0`.

    float32 division rounds like float64 division cast to float32; multiplying by 1/255 (what
    `Rescaling` does) differs for half of the 256 values. Plain `divide` by a constant is not
    enough: TensorFlow's graph optimiser rewrites it into that multiplication. It leaves
    `divide_no_nan` alone, and sigmoid's training is sensitive enough to tell the difference.
    """

    def call(self, inputs):
        return keras.ops.divide_no_nan(keras.ops.cast(inputs, self.compute_dtype), 255.0)


@keras.saving.register_keras_serializable(package="pipeline")
class PlateauShare(keras.metrics.Metric):
    """Share of an epoch's predictions on the most-predicted class: 0.1 balanced, 1.0 one class.

    A metric rather than an extra prediction pass, so watching the plateau costs next to nothing.
    """

    def __init__(self, n_classes: int = N_CLASSES, name: str = "plateau_share", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.n_classes = n_classes
        self.counts = self.add_variable(shape=(n_classes,), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        predicted = keras.ops.argmax(y_pred, axis=-1)
        hits = keras.ops.one_hot(predicted, self.n_classes, dtype=self.dtype)
        self.counts.assign_add(keras.ops.sum(hits, axis=0))

    def result(self):
        return keras.ops.max(self.counts) / keras.ops.maximum(keras.ops.sum(self.counts), 1.0)

    def reset_state(self) -> None:
        self.counts.assign(keras.ops.zeros((self.n_classes,), dtype=self.dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "n_classes": self.n_classes}


@keras.saving.register_keras_serializable(package="pipeline")
def binary_crossentropy_of_sigmoid(y_true, y_pred):
    """Binary cross-entropy of a sigmoid output, read from the second column of the two-way
    output (p) against the second column of the one-hot labels (1 for the second class): Keras'
    own `binary_crossentropy`, so the gradient reaches the sigmoid unit exactly as it would
    without the fixed layer after it."""
    return keras.losses.binary_crossentropy(y_true[:, 1:], y_pred[:, 1:])


# What a saved model needs to load: pass as `custom_objects` to `keras.saving.load_model`.
CUSTOM_OBJECTS = {
    "ToUnitRange": ToUnitRange,
    "PlateauShare": PlateauShare,
    "binary_crossentropy_of_sigmoid": binary_crossentropy_of_sigmoid,
}


def _name(base: str, index: int) -> str:
    """Keras' own naming: conv2d, conv2d_1, conv2d_2, …"""
    return base if index == 0 else f"{base}_{index}"


def _hidden(layer: layers.Layer, activation, batch_norm: bool) -> list[layers.Layer]:
    """`layer` with `activation`; with batch_norm: layer → BatchNormalization → activation."""
    if not batch_norm:
        return [layer]
    layer.activation = keras.activations.get("linear")
    return [
        layer,
        layers.BatchNormalization(name=f"{layer.name}_bn"),
        layers.Activation(activation, name=f"{layer.name}_act"),
    ]


def build_cnn(
    activation: str,
    params: ModelParams = TUTORIAL,
    input_shape: tuple[int, int, int] = IMAGE_SHAPE,
    n_classes: int = N_CLASSES,
) -> keras.Sequential:
    """[Conv2D → MaxPool] × conv_blocks → Flatten → Dense × dense_layers → the output layer
    (`output_layers`).

    Hidden layers use `activation`. With the defaults this is the tutorial's network. The model
    takes raw uint8 images and scales them to [0, 1] itself, so the data can stay uint8 until it
    is batched and the saved model needs no preprocessing step to serve.
    """
    name, activation = activation, activations.resolve(activation)
    stack: list[layers.Layer] = [
        keras.Input(shape=input_shape, dtype="uint8", name="image"),
        ToUnitRange(name="to_unit_range"),
    ]
    check_geometry(params, input_shape[0])
    for block in range(params.conv_blocks):
        conv = layers.Conv2D(
            params.conv_filters,
            params.kernel_size,
            activation=activation,
            kernel_initializer=params.initializer,
            name=_name("conv2d", block),
        )
        stack += _hidden(conv, activation, params.batch_norm)
        stack.append(layers.MaxPooling2D(params.pool_size, name=_name("max_pooling2d", block)))
    stack.append(layers.Flatten(name="flatten"))
    for index in range(params.dense_layers):
        dense = layers.Dense(
            params.dense_units,
            activation=activation,
            kernel_initializer=params.initializer,
            name=_name("dense", index),
        )
        stack += _hidden(dense, activation, params.batch_norm)
    stack += output_layers(params.output, n_classes, _name("dense", params.dense_layers))
    return keras.Sequential(stack, name=f"cnn_{activations.slug(name)}")


def output_layers(output: str, n_classes: int, name: str) -> list[layers.Layer]:
    """softmax: Dense(n_classes, softmax), the tutorial's. sigmoid: Dense(1, sigmoid), then a
    fixed (untrained) Dense that turns p into (1 − p, p), Keras' own layer so that the model
    serves without this package."""
    if output == "softmax":
        return [layers.Dense(n_classes, activation="softmax", name=name)]
    if n_classes != 2:
        raise ValueError(f"a sigmoid output tells two classes apart, not {n_classes}")
    two_way = layers.Dense(
        2,
        kernel_initializer=keras.initializers.Constant([[-1.0, 1.0]]),
        bias_initializer=keras.initializers.Constant([1.0, 0.0]),
        trainable=False,
        name=TWO_WAY,
    )
    return [layers.Dense(1, activation="sigmoid", name=name), two_way]


def export_model(model: keras.Model) -> keras.Model:
    """The trained network with only Keras' own layers, to serve where this package is not.

    The same layers and weights behind a built-in `Rescaling(1/255)` instead of `ToUnitRange`, as
    a functional model whose input is named `image` (MLflow's pyfunc passes a named input as a
    dict, which a Sequential model rejects). Rescaling multiplies by 1/255, which rounds a few
    pixel values one float32 step away from training's exact division; the predictions differ
    from the trained model's by far less than 1e-5 (a test checks). Uncompiled: serving needs
    no loss or metrics, and the plateau metric is ours.
    """
    if not isinstance(model.layers[0], ToUnitRange):
        raise ValueError("export_model takes a network made by build_cnn (ToUnitRange first)")
    inputs = keras.Input(shape=model.input_shape[1:], dtype="uint8", name="image")
    outputs = layers.Rescaling(1 / 255, name="to_unit_range")(inputs)
    for layer in model.layers[1:]:
        outputs = layer(outputs)
    return keras.Model(inputs, outputs, name=model.name)


def compile_model(model: keras.Model, learning_rate: float, steps_per_execution: int = 1) -> None:
    """Adam + categorical cross-entropy on one-hot labels, as the tutorial compiled it; binary
    cross-entropy for a sigmoid output.

    (Sparse labels give the same loss in exact arithmetic but round differently.)
    """
    sigmoid_output = model.layers[-1].name == TWO_WAY
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=binary_crossentropy_of_sigmoid if sigmoid_output else "categorical_crossentropy",
        metrics=["accuracy", PlateauShare(model.output_shape[-1])],
        steps_per_execution=steps_per_execution,
    )
