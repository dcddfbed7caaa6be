import keras
import pytest

from pipeline.model import TUTORIAL, build_cnn
from pipeline.params import ModelParams, ParamsError


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_tutorial_network_has_923914_parameters(activation):
    model = build_cnn(activation)
    assert model.count_params() == 923_914
    assert [layer.count_params() for layer in model.layers] == [0, 896, 0, 0, 921_728, 1_290]


def test_layer_order_and_activations():
    model = build_cnn("sigmoid")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Rescaling", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    conv, dense, out = model.layers[1], model.layers[4], model.layers[5]
    assert conv.activation is keras.activations.sigmoid
    assert dense.activation is keras.activations.sigmoid
    assert out.activation is keras.activations.softmax
    assert model.layers[3].output.shape[-1] == 15 * 15 * 32
    assert build_cnn("relu").layers[1].activation is keras.activations.relu


def test_model_knobs_change_the_shape():
    small = build_cnn(
        "relu", ModelParams(conv_filters=8, kernel_size=5, pool_size=2, dense_units=16)
    )
    # 8·(5·5·3+1) + (14·14·8·16 + 16) + (16·10 + 10)
    assert small.count_params() == 608 + 25_104 + 170


def test_unknown_activation_is_a_clear_error():
    with pytest.raises(ParamsError, match="choose one of"):
        build_cnn("softsign")


def test_impossible_geometry_is_a_clear_error():
    with pytest.raises(ValueError, match="smaller values"):
        build_cnn("relu", ModelParams(conv_filters=8, kernel_size=32, pool_size=2, dense_units=4))
    assert TUTORIAL.dense_units == 128
