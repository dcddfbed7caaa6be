"""params.yaml → frozen, validated dataclasses.

The key names in params.yaml are the user interface (`dvc exp run -S train.epochs=5`), so every
mistake is reported with the key that caused it and how to fix it, before any work starts.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from pipeline.cifar import IMAGE_SHAPE
from pipeline.errors import PipelineError

# Activations the network can be built with; names are Keras activation identifiers.
ACTIVATIONS = ("sigmoid", "relu", "tanh", "leaky_relu", "elu", "gelu", "swish")
# The two the tutorial compares: always trained, by the stages train_sigmoid and train_relu.
MAIN_ACTIVATIONS = ("sigmoid", "relu")

# How training is spread over devices (see pipeline.train.make_strategy).
DISTRIBUTIONS = ("none", "mirrored")

_URL_SCHEMES = ("https://", "http://", "file://")
# The real archive always has this many training images (the tiny test archives have fewer,
# which preprocess checks against the archive itself).
CIFAR10_TRAIN_IMAGES = 50_000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ParamsError(PipelineError):
    """params.yaml is missing, malformed, or holds a value of the wrong type or range."""


def check_activation(name: str) -> str:
    """Return `name` if the network can be built with it, else raise naming the allowed values."""
    if name not in ACTIVATIONS:
        raise ParamsError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return name


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


def _is_url_or_path(value: str) -> bool:
    """A URL of a scheme we fetch, or a local path (no scheme at all)."""
    return value.startswith(_URL_SCHEMES) or (bool(value.strip()) and "://" not in value)


def _is_sha256(value: str) -> bool:
    return bool(_SHA256.match(value))


def _non_empty(value: str) -> bool:
    return bool(value.strip())


# A rule is (check, what the value must be). Checks run after the type check.
Rule = tuple[Callable[[Any], bool], str]
POSITIVE: Rule = (_positive, "greater than 0")
NON_NEGATIVE: Rule = (_non_negative, "0 or more")


@dataclass(frozen=True)
class DataParams:
    url: str  # where the archive comes from: https://, http://, file:// or a path (relative: to the repo)
    sha256: str  # expected sha256 of that archive, 64 lowercase hex digits
    val_size: int  # training images held out for validation; 0 = validate on the test set
    train_limit: int  # stratified subset of the remaining training images; 0 = all of them
    seed: int  # seed of the validation split and the subset

    RULES: ClassVar[dict[str, Rule]] = {
        "url": (
            _is_url_or_path,
            "a URL starting with https://, http:// or file://, or a path to a local file",
        ),
        "sha256": (_is_sha256, "64 lowercase hex digits"),
        "val_size": NON_NEGATIVE,
        "train_limit": NON_NEGATIVE,
        "seed": NON_NEGATIVE,
    }


@dataclass(frozen=True)
class ModelParams:
    conv_filters: int  # filters of each convolution (tutorial: 32, one convolution)
    kernel_size: int  # their square kernel side (tutorial: 3)
    pool_size: int  # max-pooling window side (tutorial: 2)
    dense_units: int  # units of each hidden dense layer (tutorial: 128)
    conv_blocks: int  # convolution + max-pooling blocks (tutorial: 1)
    dense_layers: int  # hidden dense layers (tutorial: 1)
    batch_norm: bool  # batch normalisation before each hidden activation (tutorial: no)

    RULES: ClassVar[dict[str, Rule]] = {
        "conv_filters": POSITIVE,
        "kernel_size": (lambda v: 1 <= v <= 32, "between 1 and 32"),
        "pool_size": (lambda v: 1 <= v <= 30, "between 1 and 30"),
        "dense_units": POSITIVE,
        "conv_blocks": (lambda v: 1 <= v <= 4, "between 1 and 4"),
        "dense_layers": (lambda v: 1 <= v <= 8, "between 1 and 8"),
        "batch_norm": (lambda v: True, "true or false"),
    }


@dataclass(frozen=True)
class TrainParams:
    epochs: int  # passes over the training set (tutorial: 10)
    batch_size: int  # images per gradient step (tutorial: 64)
    learning_rate: float  # Adam's step size (tutorial: 1e-3)
    seeds: tuple[int, ...]  # one model per seed (weights and data order); the first is the primary
    distribution: str  # "none": one device; "mirrored": tf.distribute.MirroredStrategy
    extra_activations: tuple[str, ...]  # trained by stage train_extra beside the main two

    RULES: ClassVar[dict[str, Rule]] = {
        "epochs": POSITIVE,
        "batch_size": POSITIVE,
        "learning_rate": POSITIVE,
        "seeds": (
            lambda v: len(v) > 0 and len(set(v)) == len(v) and min(v) >= 0,
            "a non-empty list of distinct seeds, each 0 or more",
        ),
        "extra_activations": (
            lambda v: (
                len(set(v)) == len(v)
                and all(a in ACTIVATIONS and a not in MAIN_ACTIVATIONS for a in v)
            ),
            "a list of distinct activations from "
            + ", ".join(a for a in ACTIVATIONS if a not in MAIN_ACTIVATIONS),
        ),
        "distribution": (lambda v: v in DISTRIBUTIONS, f"one of {', '.join(DISTRIBUTIONS)}"),
    }

    @property
    def activations(self) -> tuple[str, ...]:
        """Every activation a run trains: the main two, then the extras."""
        return (*MAIN_ACTIVATIONS, *self.extra_activations)


@dataclass(frozen=True)
class EvaluateParams:
    n_examples: int  # fixed test images whose predictions the report shows

    RULES: ClassVar[dict[str, Rule]] = {
        "n_examples": (lambda v: 0 <= v <= 100, "between 0 and 100"),
    }


@dataclass(frozen=True)
class MlflowParams:
    experiment: str  # MLflow experiment every stage logs its run to

    RULES: ClassVar[dict[str, Rule]] = {"experiment": (_non_empty, "a non-empty name")}


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    mlflow: MlflowParams


# What a YAML value may be for each field type (YAML's true/false are bools, which Python also
# counts as ints, so they are refused where a number is wanted), and how errors name the type.
_ACCEPTS: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    str: (str,),
    bool: (bool,),
}
_TYPE_NAMES: dict[Any, str] = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    tuple[int, ...]: "list of integers",
    tuple[str, ...]: "list of names",
}


def _has_type(value: Any, annotation: Any) -> bool:
    """Does a YAML value fit a field of type `annotation` (int, float, str, bool, tuple[…, ...])?"""
    if typing.get_origin(annotation) is tuple:
        inner = typing.get_args(annotation)[0]
        return isinstance(value, list) and all(_has_type(v, inner) for v in value)
    if annotation is not bool and isinstance(value, bool):
        return False
    return isinstance(value, _ACCEPTS[annotation])


_FIX = "fix it in params.yaml or override it with `dvc exp run -S {key}=...`"


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ParamsError(f"params section {name!r} must be a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        key = f"{name}.{unknown[0]}"
        raise ParamsError(
            f"unknown param {key!r}; known keys in {name!r}: {', '.join(fields)}; "
            "remove or rename it in params.yaml"
        )
    values = {}
    for field_name in fields:
        key = f"{name}.{field_name}"
        if field_name not in raw:
            raise ParamsError(f"missing param {key!r}; add it to params.yaml")
        value = raw[field_name]
        if not _has_type(value, types[field_name]):
            raise ParamsError(
                f"param {key!r} must be of type {_TYPE_NAMES[types[field_name]]}, got {value!r}; "
                + _FIX.format(key=key)
            )
        check, wanted = cls.RULES[field_name]
        if not check(value):
            raise ParamsError(
                f"param {key!r} must be {wanted}, got {value!r}; " + _FIX.format(key=key)
            )
        if types[field_name] is float:
            value = float(value)
        elif isinstance(value, list):
            value = tuple(value)
        values[field_name] = value
    return cls(**values)


def check_consistency(params: Params) -> None:
    """Rules that span several keys, checked before any stage runs (so before DVC deletes any
    output): the split must fit CIFAR-10's training set, and the network must fit the image."""
    data = params.data
    if data.val_size >= CIFAR10_TRAIN_IMAGES:
        raise ParamsError(
            f"param 'data.val_size' must be less than {CIFAR10_TRAIN_IMAGES:,} (CIFAR-10's "
            f"training images), got {data.val_size}; " + _FIX.format(key="data.val_size")
        )
    if data.train_limit > CIFAR10_TRAIN_IMAGES - data.val_size:
        raise ParamsError(
            f"param 'data.train_limit' is {data.train_limit}, but only "
            f"{CIFAR10_TRAIN_IMAGES - data.val_size:,} training images remain after data.val_size; "
            "choose a smaller value or 0 for all"
        )
    model = params.model
    side = IMAGE_SHAPE[0]
    for _ in range(model.conv_blocks):
        side -= model.kernel_size - 1
        if side < model.pool_size:
            raise ParamsError(
                f"model.kernel_size {model.kernel_size}, model.pool_size {model.pool_size} and "
                f"model.conv_blocks {model.conv_blocks} leave nothing of a {IMAGE_SHAPE[0]}-pixel "
                "image; use smaller values or fewer blocks"
            )
        side //= model.pool_size


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) and return it as dataclasses."""
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping with the sections " + _section_names())
    sections = typing.get_type_hints(Params)  # section name → its dataclass
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ParamsError(
            f"unknown params section {unknown[0]!r}; known sections: {_section_names()}"
        )
    built = {}
    for name, section_type in sections.items():
        if name not in raw:
            raise ParamsError(f"missing params section {name!r}; add it to params.yaml")
        built[name] = _build_section(name, section_type, raw[name])
    params = Params(**built)
    check_consistency(params)
    return params


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} not found; run from the project root") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ParamsError(f"{path} is not valid YAML{line}; fix its syntax") from None
    return parse_params(raw)


def flatten(section: str, values: Any) -> dict[str, Any]:
    """`flatten("train", TrainParams(...))` → {"train.epochs": 10, ...}, as MLflow logs them."""
    flat = {}
    for key, value in dataclasses.asdict(values).items():
        flat[f"{section}.{key}"] = ",".join(map(str, value)) if isinstance(value, tuple) else value
    return flat


def logged_params(params: Params, keys: Sequence[str]) -> dict[str, Any]:
    """The flattened params that `keys` name, each a section ("data") or one key ("train.epochs"):
    what a stage logs to MLflow, the same keys dvc.yaml lists for it."""
    logged: dict[str, Any] = {}
    for key in keys:
        section = key.split(".")[0]
        flat = flatten(section, getattr(params, section))
        logged |= flat if key == section else {key: flat[key]}
    return logged


def _section_names() -> str:
    return ", ".join(f.name for f in dataclasses.fields(Params))
