"""The tutorial's CNN, built for any supported activation. Keras only, no I/O."""

from __future__ import annotations

import keras
from keras import layers

from pipeline.params import ModelParams, check_activation

IMAGE_SHAPE = (32, 32, 3)
N_CLASSES = 10

# The tutorial's network: with these settings it has 923,914 trainable parameters.
TUTORIAL = ModelParams(conv_filters=32, kernel_size=3, pool_size=2, dense_units=128)


def build_cnn(
    activation: str,
    params: ModelParams = TUTORIAL,
    input_shape: tuple[int, int, int] = IMAGE_SHAPE,
    n_classes: int = N_CLASSES,
) -> keras.Sequential:
    """Conv2D → MaxPool → Flatten → Dense → Dense(softmax), hidden layers using `activation`.

    The model takes raw uint8 images and scales them to [0, 1] itself, so the data can stay
    uint8 until it is batched and the saved model needs no preprocessing step to serve.
    """
    check_activation(activation)
    side = input_shape[0] - params.kernel_size + 1
    if side < params.pool_size:
        raise ValueError(
            f"kernel_size {params.kernel_size} and pool_size {params.pool_size} leave nothing of a "
            f"{input_shape[0]}-pixel image; use smaller values"
        )
    return keras.Sequential(
        [
            keras.Input(shape=input_shape, dtype="uint8", name="image"),
            layers.Rescaling(1.0 / 255.0, name="rescale"),
            layers.Conv2D(
                params.conv_filters, params.kernel_size, activation=activation, name="conv2d"
            ),
            layers.MaxPooling2D(params.pool_size, name="max_pooling2d"),
            layers.Flatten(name="flatten"),
            layers.Dense(params.dense_units, activation=activation, name="dense"),
            layers.Dense(n_classes, activation="softmax", name="dense_1"),
        ],
        name=f"cnn_{activation}",
    )


def compile_model(model: keras.Model, learning_rate: float, steps_per_execution: int = 1) -> None:
    """Adam + cross-entropy on integer labels (same loss as categorical on one-hot labels)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
