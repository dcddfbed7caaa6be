import numpy as np
import pytest

from pipeline.diagnostics import make_probe, peak_slope, probe_indices, slope_stats
from pipeline.model import TUTORIAL, build_cnn

SMALL = TUTORIAL.model_copy(update={"conv_filters": 4, "dense_units": 8})


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_flat_for_sigmoid_is_the_old_bound_outside_001_and_099():
    """σ′ = σ(1 − σ) < 0.0396 · σ′(0) exactly where σ < 0.01 or σ > 0.99."""
    z = np.linspace(-8, 8, 2001)
    y = sigmoid(z)
    stats = slope_stats((y * (1 - y))[None, :], peak=0.25)
    old = np.mean((y < 0.01) | (y > 0.99))
    assert stats["saturated_fraction"] == pytest.approx(old, abs=1 / len(z))
    assert stats["dead_fraction"] == 0.0


def test_dead_units_have_zero_slope_for_every_image():
    # Unit 0 has slope 0 for both images (dead); unit 1 once (alive); unit 2 never.
    slopes = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    stats = slope_stats(slopes, peak=1.0)
    assert stats["dead_fraction"] == pytest.approx(1 / 3)
    assert stats["saturated_fraction"] == pytest.approx(0.5)  # three of six inputs are flat


@pytest.mark.parametrize(
    ("activation", "peak"),
    [
        ("sigmoid", 0.25),
        ("tanh", 1.0),
        ("relu", 1.0),
        ("selu", 1.0507 * 1.67326),
        ("softsign", 1.0),
    ],
)
def test_peak_slope_of_any_keras_activation(activation, peak):
    import keras

    assert peak_slope(keras.activations.get(activation)) == pytest.approx(peak, rel=2e-3)


def test_probe_indices_are_fixed_by_seed():
    labels = np.arange(1000) % 10
    assert np.array_equal(probe_indices(labels, 64, 1), probe_indices(labels, 64, 1))
    assert len(set(probe_indices(labels, 64, 1))) == 64


def images(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def test_forced_saturation_reports_one():
    model = build_cnn("sigmoid", SMALL)
    kernel, bias = model.get_layer("conv2d").get_weights()
    model.get_layer("conv2d").set_weights([kernel * 0, bias + 50.0])
    metrics = make_probe(model, "sigmoid")(*images())
    assert metrics["saturated_fraction/conv2d"] == 1.0
    assert metrics["mean_activation/conv2d"] == pytest.approx(1.0)
    # Saturated sigmoid passes (almost) no gradient back to the convolution.
    assert metrics["grad_norm/conv2d/kernel"] < 1e-12 * max(metrics["grad_norm/dense_1/kernel"], 1)


def test_negative_bias_kills_relu_units_and_their_gradient():
    model = build_cnn("relu", SMALL)
    kernel, bias = model.get_layer("dense").get_weights()
    model.get_layer("dense").set_weights([kernel, bias - 1000.0])
    metrics = make_probe(model, "relu")(*images())
    assert metrics["dead_fraction/dense"] == 1.0
    assert metrics["grad_norm/dense/kernel"] == 0.0
    assert metrics["grad_norm/conv2d/kernel"] == 0.0
    assert metrics["grad_norm/dense_1/bias"] > 0.0


@pytest.mark.parametrize(
    ("activation", "slope"),
    [
        ("sigmoid", lambda y: y * (1 - y)),  # σ' = σ(1 − σ), at most 0.25
        ("tanh", lambda y: 1 - y**2),
        ("relu", lambda y: (y > 0).astype(float)),
    ],
)
def test_mean_slope_is_the_derivative_met_by_the_probe(activation, slope):
    import keras

    model = build_cnn(activation, SMALL)
    probe_images, labels = images()
    metrics = make_probe(model, activation)(probe_images, labels)
    dense = keras.Model(model.inputs, model.get_layer("dense").output)
    outputs = np.asarray(dense(probe_images, training=False), dtype=np.float64)
    assert metrics["mean_slope/dense"] == pytest.approx(slope(outputs).mean(), rel=1e-3, abs=1e-6)


def test_probe_names_every_trainable_variable():
    model = build_cnn("relu", SMALL)
    metrics = make_probe(model, "relu")(*images())
    grads = sorted(k for k in metrics if k.startswith("grad_norm/"))
    assert grads == sorted(
        f"grad_norm/{layer}/{kind}"
        for layer in ("conv2d", "dense", "dense_1")
        for kind in ("kernel", "bias")
    )
    assert {"dead_fraction/conv2d", "dead_fraction/dense"} <= metrics.keys()


def test_mean_slope_with_batch_norm_reads_the_activation_layers_input():
    import keras

    model = build_cnn("sigmoid", SMALL.model_copy(update={"batch_norm": True}))
    for name in ("conv2d_bn", "dense_bn"):
        # A shift of 3 after normalising: the layer's own output would give another slope.
        gamma, beta, mean, variance = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([gamma, beta + 3.0, mean, variance])
    probe_images, labels = images()
    metrics = make_probe(model, "sigmoid")(probe_images, labels)
    assert sorted(k for k in metrics if k.startswith("mean_slope/")) == [
        "mean_slope/conv2d_act",
        "mean_slope/dense_act",
    ]
    for name in ("conv2d_act", "dense_act"):
        inputs = keras.Model(model.inputs, model.get_layer(name).input)
        y = sigmoid(np.asarray(inputs([probe_images], training=False), dtype=np.float64))
        expected = (y * (1 - y)).mean()
        assert metrics[f"mean_slope/{name}"] == pytest.approx(expected, rel=1e-3), name


@pytest.mark.parametrize("batch_norm", [False, True])
def test_the_step_curves_layer_probe_agrees_with_the_full_probe(batch_norm):
    from pipeline.diagnostics import make_layer_probe

    model = build_cnn("sigmoid", SMALL.model_copy(update={"batch_norm": batch_norm}))
    conv = model.get_layer("conv2d")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel, bias + 4.0])  # push some inputs into the flat tails
    batch, labels = images()
    full = make_probe(model, "sigmoid")(batch, labels)
    light = make_layer_probe(model, "sigmoid")(batch)
    assert set(light) == {k for k in full if k.startswith(("mean_slope/", "saturated_fraction/"))}
    assert len(light) == 4  # two hidden layers, two quantities each
    for key, value in light.items():
        assert value == pytest.approx(full[key], rel=1e-6, abs=1e-9), key


def test_a_sigmoid_output_is_not_probed_as_a_hidden_layer():
    """With sigmoid hidden layers and a sigmoid output, only the hidden ones are the
    activation under study; the output unit and the fixed two-way layer after it are not."""
    small = SMALL.model_copy(update={"output": "sigmoid"})
    model = build_cnn("sigmoid", small, n_classes=2)
    probe_images, labels = images()
    metrics = make_probe(model, "sigmoid")(probe_images, labels % 2)
    assert sorted(k for k in metrics if k.startswith("mean_slope/")) == [
        "mean_slope/conv2d",
        "mean_slope/dense",
    ]
    assert sorted(k for k in metrics if k.startswith("grad_norm/") and k.endswith("/kernel")) == [
        "grad_norm/conv2d/kernel",
        "grad_norm/dense/kernel",
        "grad_norm/dense_1/kernel",
    ]
