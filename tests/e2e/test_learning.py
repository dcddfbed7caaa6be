"""Tiny trainings in process on synthetic images whose class is plain to see: the network learns
them, and each training param (the learning rate, the batch size, the epochs, the seeds, the
model section) changes what `train.train` does."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import train
from pipeline.model import TUTORIAL, build_cnn
from pipeline.params import TrainParams

SMALL = TUTORIAL.model_copy(update={"conv_filters": 8, "dense_units": 64})


def squares(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """32×32×3 uint8 noise, each image with a bright 6×6 square where its class says (ten
    places on a 4×4 grid): nothing else tells the ten classes apart."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    images = rng.integers(0, 100, (len(labels), 32, 32, 3), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        row, col = divmod(int(label), 4)
        image[2 + 8 * row : 8 + 8 * row, 2 + 8 * col : 8 + 8 * col] = 255
    return images, labels


def settings(**changes) -> TrainParams:
    """The training params of these tests: one epoch, batches of 32, Adam at 1e-3, seed 1."""
    base = {
        "epochs": 1,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "seeds": (1,),
        "distribution": "none",
        "extra_activations": (),
    }
    return TrainParams(**(base | changes))


def test_an_easy_task_is_learned_far_above_chance():
    train_data, held_out = squares(30, seed=1), squares(20, seed=101)
    model, history = train.train("relu", SMALL, settings(epochs=5), train_data, held_out, verbose=0)
    accuracy = np.mean(model.predict(held_out[0], verbose=0).argmax(axis=1) == held_out[1])
    # Chance is 0.1. With seeds 1 to 8 every model had all 200 held-out images right.
    assert accuracy >= 0.95
    # Keras validated the final weights on the validation images against their own labels.
    assert history["val_accuracy"].iloc[-1] == pytest.approx(accuracy)


def test_the_learning_rate_sets_the_size_of_adams_first_step():
    """Adam's first step moves a weight by the learning rate times g/(|g| + ε'), about the rate
    itself where the gradient g is not tiny. Two trainings that differ only in the rate start
    from the same weights and take the same gradient: one step later they are the difference
    of the rates apart. (1e-3 is also Keras' default rate: a rate ignored gives no gap.)"""
    data = squares(4, seed=0)  # 40 images: one batch, one step
    kernels = {}
    for rate in (1e-3, 4e-3):
        model, _ = train.train(
            "relu", SMALL, settings(batch_size=40, learning_rate=rate), data, data, verbose=0
        )
        assert float(model.optimizer.learning_rate) == pytest.approx(rate, rel=1e-6)
        assert int(model.optimizer.iterations) == 1
        kernels[rate] = model.get_layer("dense").kernel.numpy()
    gap = np.abs(kernels[4e-3] - kernels[1e-3]).max()
    assert gap == pytest.approx(3e-3, rel=1e-2)


def test_batch_size_and_epochs_set_the_number_of_steps():
    model, history = train.train(
        "relu", SMALL, settings(epochs=2, batch_size=16), squares(4, 0), squares(1, 1), verbose=0
    )
    # 40 images in batches of 16: 3 steps an epoch (Keras' default batch of 32 would give 2).
    assert int(model.optimizer.iterations) == 2 * 3
    assert history["epoch"].tolist() == [1, 2]


def test_the_first_of_train_seeds_is_the_default_and_the_model_section_is_built():
    data = squares(2, seed=0)

    def trained(seeds, seed=None):
        model, _ = train.train(
            "relu", SMALL, settings(seeds=seeds), data, data, verbose=0, seed=seed
        )
        return model

    first = trained((5, 6))
    assert first.count_params() == build_cnn("relu", SMALL).count_params() != 923_914
    same = trained((6,), seed=5)
    other = trained((6, 5))
    for a, b in zip(first.get_weights(), same.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.get_weights()[0], other.get_weights()[0])
