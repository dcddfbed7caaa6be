import keras
import numpy as np
import pytest

from pipeline.activations import ActivationError
from pipeline.model import (
    CUSTOM_OBJECTS,
    TUTORIAL,
    TWO_WAY,
    PlateauShare,
    ToUnitRange,
    build_cnn,
    compile_model,
    export_model,
)
from pipeline.params import ModelParams


def small_net(**changes) -> ModelParams:
    """The tutorial's network with `changes` (smaller, for speed)."""
    return TUTORIAL.model_copy(update=changes)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_tutorial_network_has_923914_parameters(activation):
    model = build_cnn(activation)
    assert model.count_params() == 923_914
    assert [layer.count_params() for layer in model.layers] == [0, 896, 0, 0, 921_728, 1_290]


def test_layer_order_and_activations():
    model = build_cnn("sigmoid")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["ToUnitRange", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    conv, dense, out = model.layers[1], model.layers[4], model.layers[5]
    assert conv.activation is keras.activations.sigmoid
    assert dense.activation is keras.activations.sigmoid
    assert out.activation is keras.activations.softmax
    assert model.layers[3].output.shape[-1] == 15 * 15 * 32
    assert build_cnn("relu").layers[1].activation is keras.activations.relu


def test_model_knobs_change_the_shape():
    small = build_cnn("relu", small_net(conv_filters=8, kernel_size=5, dense_units=16))
    # 8·(5·5·3+1) + (14·14·8·16 + 16) + (16·10 + 10)
    assert small.count_params() == 608 + 25_104 + 170


def test_pool_size_sets_the_pooling_window():
    model = build_cnn("relu", small_net(conv_filters=8, dense_units=16, pool_size=3))
    assert model.get_layer("max_pooling2d").pool_size == (3, 3)
    # 32 → conv 30 → pool 10: 10·10·8 features (the default window of 2 would leave 15·15·8).
    assert model.get_layer("flatten").output.shape[-1] == 800


def test_initializer_sets_every_hidden_kernel_but_not_the_output():
    deep = small_net(conv_filters=4, dense_units=8, conv_blocks=2, dense_layers=2)
    model = build_cnn("relu", deep.model_copy(update={"initializer": "ones"}))
    for name in ("conv2d", "conv2d_1", "dense", "dense_1"):
        assert np.all(model.get_layer(name).kernel.numpy() == 1.0), name
    # The softmax layer keeps Keras' default: its kernel is not all ones.
    assert not np.all(model.get_layer("dense_2").kernel.numpy() == 1.0)
    plain = build_cnn("relu", deep)  # glorot_uniform: bounded by sqrt(6 / (fan_in + fan_out))
    kernel = plain.get_layer("dense").kernel.numpy()
    assert np.abs(kernel).max() <= np.sqrt(6 / sum(kernel.shape)) and np.unique(kernel).size > 1


def test_compile_model_sets_the_learning_rate_it_is_given():
    # Not Keras' default (1e-3, also the tutorial's): a constant in the code would be caught.
    model = build_cnn("relu", small_net(conv_filters=2, dense_units=4))
    compile_model(model, 0.0123)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0123, rel=1e-6)


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ActivationError, match="Keras has no activation of that name"):
        build_cnn("swishy")


def test_impossible_geometry_is_a_clear_error():
    with pytest.raises(ValueError, match="smaller values"):
        build_cnn("relu", small_net(conv_filters=8, kernel_size=32, dense_units=4))


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_scaling_matches_float64_division_bit_for_bit(mode):
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1)
    if mode == "eager":
        scaled = keras.ops.convert_to_numpy(ToUnitRange()(pixels)).ravel()
    else:  # compiled as in training, where TensorFlow's graph optimiser rewrites arithmetic
        scale = keras.Sequential([keras.Input((1, 256, 1), dtype="uint8"), ToUnitRange()])
        scaled = scale.predict(pixels, verbose=0).ravel()
    assert scaled.dtype == np.float32
    assert np.array_equal(scaled, (np.arange(256) / 255.0).astype(np.float32))


def test_saved_model_loads_back(tmp_path):
    small = small_net(conv_filters=2, dense_units=4)
    model = build_cnn("relu", small)
    compile_model(model, 1e-3)
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    model.optimizer.build(model.trainable_variables)  # optimizer state too, without training
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", custom_objects=CUSTOM_OBJECTS)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_plateau_share_counts_the_top_class():
    metric = PlateauShare(n_classes=3)
    metric.update_state(None, np.array([[0.9, 0.1, 0.0], [0.8, 0.1, 0.1]]))
    metric.update_state(None, np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))
    assert float(metric.result()) == pytest.approx(0.75)
    metric.reset_state()
    metric.update_state(None, np.eye(3))
    assert float(metric.result()) == pytest.approx(1 / 3)


@pytest.mark.parametrize("activation", ["tanh", "leaky_relu", "elu", "gelu", "swish"])
def test_more_activations_build_the_same_network(activation):
    model = build_cnn(activation)
    assert model.count_params() == 923_914
    assert model.get_layer("dense").activation is keras.activations.get(activation)


def test_depth_and_batch_norm():
    deep = small_net(conv_filters=8, dense_units=16, conv_blocks=2, dense_layers=2, batch_norm=True)
    model = build_cnn("sigmoid", deep)
    names = [layer.name for layer in model.layers]
    assert names == ["to_unit_range", "conv2d", "conv2d_bn", "conv2d_act", "max_pooling2d",
                     "conv2d_1", "conv2d_1_bn", "conv2d_1_act", "max_pooling2d_1", "flatten",
                     "dense", "dense_bn", "dense_act", "dense_1", "dense_1_bn", "dense_1_act",
                     "dense_2"]  # fmt: skip
    assert model.get_layer("conv2d").activation is keras.activations.linear
    # 32 → conv 30 → pool 15 → conv 13 → pool 6: 6·6·8 = 288 features into the dense layers.
    assert model.get_layer("flatten").output.shape[-1] == 288
    plain = build_cnn("sigmoid", deep.model_copy(update={"batch_norm": False}))
    assert [type(layer).__name__ for layer in plain.layers].count("BatchNormalization") == 0
    assert plain.get_layer("conv2d_1").activation is keras.activations.sigmoid


def test_too_many_blocks_for_the_image_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer blocks"):
        build_cnn(
            "relu",
            small_net(conv_filters=4, dense_units=4, conv_blocks=4),
        )


@pytest.mark.parametrize("batch_norm", [False, True])
def test_exported_model_uses_only_keras_layers_and_predicts_the_same(tmp_path, batch_norm):
    params = TUTORIAL.model_copy(update={"batch_norm": batch_norm})
    model = build_cnn("relu", params)
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    exported = export_model(model)
    assert all(type(layer).__module__.startswith("keras.") for layer in exported.layers)
    assert exported.input.dtype == "uint8" and exported.inputs[0].name == "image"
    exported.save(tmp_path / "exported.keras")
    loaded = keras.saving.load_model(tmp_path / "exported.keras")  # no custom objects needed
    expected = model.predict(images, verbose=0)
    assert np.abs(loaded.predict({"image": images}, verbose=0) - expected).max() <= 1e-5
    assert np.abs(loaded.predict(images, verbose=0) - expected).max() <= 1e-5


def test_a_users_activation_builds_saves_and_loads(tmp_path, monkeypatch):
    import sys

    (tmp_path / "useracts.py").write_text(
        "import keras\n\ndef halfsoft(x):\n    return 0.5 * keras.ops.softsign(x)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from pipeline import activations

    model = build_cnn("useracts:halfsoft", small_net())
    assert model.get_layer("dense").activation is sys.modules["useracts"].halfsoft
    model.save(tmp_path / "m.keras")
    objects = CUSTOM_OBJECTS | activations.custom_objects(["useracts:halfsoft"])
    again = keras.saving.load_model(tmp_path / "m.keras", custom_objects=objects)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    assert np.array_equal(model.predict(images, verbose=0), again.predict(images, verbose=0))


def test_a_users_activation_is_fingerprinted_without_running_its_file(tmp_path, monkeypatch):
    import hashlib
    import sys

    package = tmp_path / "ranpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = "raise SystemExit('the fingerprint ran the file')\n"
    (package / "acts.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as the stage puts its root there
    from pipeline import activations

    found = activations.fingerprint("ranpkg.acts:anything")
    assert found["source"] == "ranpkg/acts.py"
    assert found["sha256"] == hashlib.sha256(source.encode()).hexdigest()
    assert "ranpkg.acts" not in sys.modules
    with pytest.raises(ActivationError, match=r"cannot import ranpkg\.missing"):
        activations.fingerprint("ranpkg.missing:f")
    with pytest.raises(ActivationError, match=r"cannot import nopkg\.acts"):
        activations.fingerprint("nopkg.acts:f")


def sigmoid_output(**changes) -> ModelParams:
    return small_net(output="sigmoid", **changes)


def test_sigmoid_output_is_one_unit_read_as_two_probabilities():
    model = build_cnn("relu", sigmoid_output(conv_filters=2, dense_units=4), n_classes=2)
    assert [layer.name for layer in model.layers[-2:]] == ["dense_1", TWO_WAY]
    assert model.get_layer("dense_1").units == 1
    assert model.get_layer("dense_1").activation is keras.activations.sigmoid
    assert model.get_layer(TWO_WAY).trainable_weights == []
    x = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    p = keras.Model(model.inputs, model.get_layer("dense_1").output).predict(x, verbose=0)
    both = model.predict(x, verbose=0)
    np.testing.assert_allclose(both, np.hstack([1 - p, p]), atol=1e-7)
    # The tutorial's network with it: one output unit (129 weights) for ten (1,290).
    tutorial = build_cnn("relu", TUTORIAL.model_copy(update={"output": "sigmoid"}), n_classes=2)
    trainable = sum(int(np.prod(w.shape)) for w in tutorial.trainable_weights)
    assert trainable == 923_914 - 1_290 + 129


def test_a_sigmoid_output_is_refused_for_more_than_two_classes():
    with pytest.raises(ValueError, match="two classes apart, not 10"):
        build_cnn("relu", sigmoid_output(conv_filters=2, dense_units=4))


def test_sigmoid_output_trains_on_binary_cross_entropy():
    model = build_cnn("relu", sigmoid_output(conv_filters=2, dense_units=4), n_classes=2)
    compile_model(model, 1e-3)
    x = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 1, 0])
    p = model.predict(x, verbose=0)[:, 1]
    expected = keras.losses.binary_crossentropy(labels[:, None].astype("float32"), p[:, None])
    loss = model.evaluate(x, np.eye(2, dtype="float32")[labels], verbose=0, return_dict=True)
    assert loss["loss"] == pytest.approx(float(np.mean(expected)), rel=1e-5)
    assert loss["accuracy"] == pytest.approx(np.mean((p > 0.5) == labels))


def test_a_two_way_softmax_is_a_sigmoid_of_the_logit_difference():
    """softmax(a, b)[1] = σ(b − a): a sigmoid output with weights w_b − w_a gives the same
    probabilities as the two-way softmax, so the two outputs are one family of models."""
    small = small_net(conv_filters=2, dense_units=4)
    softmax = build_cnn("relu", small, n_classes=2)
    sigmoid = build_cnn("relu", small.model_copy(update={"output": "sigmoid"}), n_classes=2)
    for layer in softmax.layers[:-1]:
        sigmoid.get_layer(layer.name).set_weights(layer.get_weights())
    kernel, bias = softmax.layers[-1].get_weights()
    sigmoid.get_layer("dense_1").set_weights([kernel[:, 1:] - kernel[:, :1], bias[1:] - bias[:1]])
    x = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        sigmoid.predict(x, verbose=0), softmax.predict(x, verbose=0), atol=1e-6
    )
