from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamsError, flatten, load_params, parse_params

PROJECT = Path(__file__).resolve().parents[2]


def default_raw() -> dict:
    return yaml.safe_load((PROJECT / "params.yaml").read_text())


def test_default_params_are_the_tutorials():
    params = load_params(PROJECT / "params.yaml")
    assert params.train.epochs == 10
    assert params.train.batch_size == 64
    assert params.train.learning_rate == pytest.approx(1e-3)
    assert params.train.seeds == (42,)
    assert params.model.dense_units == 128
    assert params.data.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert params.data.sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "epochs", 0, "train.epochs"),
        ("train", "epochs", -3, "train.epochs"),
        ("train", "epochs", "ten", "train.epochs"),
        ("train", "epochs", 2.5, "train.epochs"),
        ("train", "epochs", True, "train.epochs"),
        ("train", "batch_size", 0, "train.batch_size"),
        ("train", "learning_rate", 0, "train.learning_rate"),
        ("train", "learning_rate", -0.1, "train.learning_rate"),
        ("data", "val_size", -1, "data.val_size"),
        ("data", "url", "ftp://example.org/x.tar.gz", "data.url"),
        ("data", "url", "", "data.url"),
        ("data", "val_size", 50_000, "data.val_size"),
        ("data", "train_limit", 45_001, "data.train_limit"),
        ("model", "kernel_size", 32, "model.kernel_size"),
        ("data", "sha256", "abc", "data.sha256"),
        ("evaluate", "n_examples", 1000, "evaluate.n_examples"),
        ("mlflow", "experiment", "  ", "mlflow.experiment"),
        ("train", "distribution", "horovod", "train.distribution"),
        ("train", "epochs", "10", "train.epochs"),
        ("train", "seeds", [True], "train.seeds"),
        ("data", "seed", 4.0, "data.seed"),
    ],
)
def test_bad_values_are_rejected_naming_the_key(section, key, value, expected):
    raw = default_raw()
    raw[section][key] = value
    with pytest.raises(ParamsError, match=expected.replace(".", r"\.")) as error:
        parse_params(raw)
    message = str(error.value)
    assert "\n" not in message and any(fix in message for fix in ("fix it", "choose", "use "))


def test_integer_learning_rate_is_accepted_as_float():
    raw = default_raw()
    raw["train"]["learning_rate"] = 1
    assert parse_params(raw).train.learning_rate == 1.0


def test_unknown_key_is_rejected():
    raw = default_raw()
    raw["train"]["epoch"] = 3
    with pytest.raises(ParamsError, match=r"unknown param 'train\.epoch'"):
        parse_params(raw)


def test_unknown_section_and_missing_key_are_rejected():
    raw = default_raw()
    raw["optimiser"] = {}
    with pytest.raises(ParamsError, match="unknown params section 'optimiser'"):
        parse_params(raw)
    raw = default_raw()
    del raw["data"]["seed"]
    with pytest.raises(ParamsError, match=r"missing param 'data\.seed'"):
        parse_params(raw)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [epochs: 3\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_any_keras_name_or_a_users_function_is_accepted_by_form():
    raw = default_raw()
    raw["train"]["extra_activations"] = ["selu", "mish", "mypkg.acts:my_act"]
    assert parse_params(raw).train.activations[2:] == ("selu", "mish", "mypkg.acts:my_act")


def test_flatten_prefixes_the_section():
    params = load_params(PROJECT / "params.yaml")
    flat = flatten("train", params.train)
    assert flat["train.epochs"] == 10
    assert set(flat) == {
        "train.epochs",
        "train.batch_size",
        "train.learning_rate",
        "train.seeds",
        "train.extra_activations",
        "train.distribution",
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seeds", [], "at least 1 item"),
        ("seeds", [1, 1], "must not repeat a value"),
        ("seeds", [1, -2], "greater than or equal to 0"),
        ("seeds", 42, "should be a list"),
        ("seeds", ["a"], "valid integer"),
        ("extra_activations", ["relu"], "must not repeat relu"),
        ("extra_activations", ["Soft-Sign"], "neither a Keras activation name"),
        ("extra_activations", ["mypkg/acts.py:f"], "neither a Keras activation name"),
        ("extra_activations", ["tanh", "tanh"], "must not repeat a value"),
        ("extra_activations", "tanh", "should be a list"),
    ],
)
def test_seed_and_activation_lists_are_checked(key, value, message):
    raw = default_raw()
    raw["train"][key] = value
    with pytest.raises(ParamsError, match=message):
        parse_params(raw)


def test_lists_become_tuples_and_flatten_readably():
    raw = default_raw()
    raw["train"]["seeds"] = [42, 43, 44]
    raw["train"]["extra_activations"] = ["tanh", "gelu"]
    params = parse_params(raw)
    assert params.train.seeds == (42, 43, 44)
    assert flatten("train", params.train)["train.seeds"] == "42,43,44"
    assert flatten("train", params.train)["train.extra_activations"] == "tanh,gelu"
    assert params.train.activations == ("sigmoid", "relu", "tanh", "gelu")


@pytest.mark.parametrize(
    ("key", "value"),
    [("conv_blocks", 0), ("dense_layers", 9), ("batch_norm", "yes"), ("batch_norm", 1)],
)
def test_depth_params_are_checked(key, value):
    raw = default_raw()
    raw["model"][key] = value
    with pytest.raises(ParamsError, match=f"model\\.{key}"):
        parse_params(raw)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/cifar-10-python.tar.gz",
        "file:///absolute/path/to/cifar-10-python.tar.gz",
        "../shared/data/cifar-10-python.tar.gz",
        "/absolute/path/to/cifar-10-python.tar.gz",
    ],
)
def test_url_may_be_a_url_or_a_local_path(url):
    raw = default_raw()
    raw["data"]["url"] = url
    assert parse_params(raw).data.url == url


def test_deeper_network_that_still_fits_is_accepted():
    raw = default_raw()
    raw["model"]["conv_blocks"] = 3  # 32 → 15 → 6 → 2 pixels
    assert parse_params(raw).model.conv_blocks == 3
    raw["model"]["conv_blocks"] = 4  # 2 - 2 = 0: nothing left
    with pytest.raises(ParamsError, match="leave nothing"):
        parse_params(raw)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": {"classes": ["cat"]}}, "two classes or more"),
        ({"data": {"classes": ["cat", "cat"]}}, "must not repeat"),
        ({"data": {"classes": "cat"}}, "should be a list"),
        ({"model": {"output": "sigmoid"}}, "needs exactly two classes, but data.classes gives 10"),
        (
            {"model": {"output": "sigmoid"}, "data": {"classes": ["cat", "dog", "ship"]}},
            "gives 3",
        ),
        ({"model": {"output": "tanh"}}, "model.output"),
        # Two classes keep 10,000 of CIFAR-10's training images: the split must fit those.
        ({"data": {"classes": ["cat", "dog"], "val_size": 10_000}}, "less than 10,000"),
    ],
)
def test_classes_and_the_output_layer_are_checked(changes, message):
    raw = default_raw()
    for section, values in changes.items():
        raw[section].update(values)
    with pytest.raises(ParamsError, match=message) as error:
        parse_params(raw)
    assert "\n" not in str(error.value)


def test_two_classes_with_a_sigmoid_output_are_accepted():
    raw = default_raw()
    raw["data"].update(classes=["cat", "dog"], val_size=1000)
    raw["model"]["output"] = "sigmoid"
    params = parse_params(raw)
    assert params.data.classes == ("cat", "dog") and params.data.n_classes == 2
    assert params.data.train_images == 10_000
    # Params written before these keys existed read as all ten classes and a softmax output.
    del raw["data"]["classes"], raw["model"]["output"]
    raw["data"]["val_size"] = 5000
    old = parse_params(raw)
    assert (old.data.classes, old.data.n_classes, old.model.output) == ((), 10, "softmax")
