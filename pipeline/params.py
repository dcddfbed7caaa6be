"""params.yaml → frozen, validated pydantic models.

The key names in params.yaml are the user interface (`dvc exp run -S train.epochs=5`), so every
mistake is reported in one line with the key that caused it and how to fix it, before any work
starts. Strict types: YAML's true/false are not numbers, "10" is not 10.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from pipeline.cifar import CIFAR10
from pipeline.errors import PipelineError

# The two the tutorial compares: always trained, by the stages train_sigmoid and train_relu.
MAIN_ACTIVATIONS = ("sigmoid", "relu")
# An extra activation is any of Keras' by name (selu, mish, …) or a user's own function,
# `package.module:function`; pipeline.activations resolves them. Only the form is checked here
# (no TensorFlow at this point); a name Keras does not know fails its train stage in one line.
KERAS_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# The params each stage reads and logs to MLflow, exactly as dvc.yaml lists them under the stage
# (tests/unit/test_stage_deps.py checks the two agree). A train stage reads neither train.seeds (its
# seed comes from the command line) nor train.extra_activations (they only decide which stages
# exist).
STAGE_PARAMS = {
    "download": ("data.url", "data.sha256"),
    "preprocess": ("data.val_size", "data.train_limit", "data.seed", "data.classes"),
    "train": (
        "model",
        "train.epochs",
        "train.batch_size",
        "train.learning_rate",
        "train.distribution",
    ),
    "evaluate": ("evaluate.n_examples", "train.seeds", "train.extra_activations"),
    "report": ("data", "model", "train", "evaluate"),
}
TRAIN_KEYS = STAGE_PARAMS["train"]
USER_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def stage_name(activation: str, seed: int) -> str:
    """The DVC stage that trains this (activation, seed) pair, as `dvc repro` names it."""
    if activation in MAIN_ACTIVATIONS:
        return f"train_{activation}@{seed}"
    return f"train_extra@{activation}-{seed}"


class ParamsError(PipelineError):
    """params.yaml is missing, malformed, or holds a value of the wrong type or range."""


def _url_or_path(value: str) -> str:
    """A URL of a scheme we fetch, or a local path (no scheme at all)."""
    if value.startswith(("https://", "http://", "file://")) or (
        value.strip() and "://" not in value
    ):
        return value
    raise ValueError("must be a URL starting with https://, http:// or file://, or a local path")


def _sha256(value: str) -> str:
    if re.fullmatch(r"[0-9a-f]{64}", value) is None:
        raise ValueError("must be 64 lowercase hex digits")
    return value


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty name")
    return value


def _distinct(values: tuple) -> tuple:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat a value")
    return values


def _extra_activations(values: tuple[str, ...]) -> tuple[str, ...]:
    for name in values:
        if name in MAIN_ACTIVATIONS:
            raise ValueError(f"must not repeat {name}, which is always trained")
        if not (KERAS_NAME.fullmatch(name) or USER_NAME.fullmatch(name)):
            raise ValueError(
                f"holds {name!r}, neither a Keras activation name (selu, mish, …) nor "
                "package.module:function"
            )
    return values


def _classes(values: tuple[str, ...]) -> tuple[str, ...]:
    if len(values) == 1:
        raise ValueError("must name two classes or more, or none for all ten")
    if any(not name.strip() for name in values):
        raise ValueError("must hold class names, not empty strings")
    return values


def _initializer(name: str) -> str:
    if not KERAS_NAME.fullmatch(name):
        raise ValueError(
            f"must be a Keras initializer name (glorot_uniform, he_normal, …), not {name!r}"
        )
    return name


def _as_tuple(value: Any) -> Any:
    """YAML gives lists; the params keep tuples (frozen). Anything else is refused as not a list."""
    return tuple(value) if isinstance(value, list) else value


Seeds = Annotated[
    tuple[Annotated[int, Field(ge=0)], ...],
    BeforeValidator(_as_tuple),
    Field(min_length=1),
    AfterValidator(_distinct),
]
ClassNames = Annotated[
    tuple[str, ...],
    BeforeValidator(_as_tuple),
    AfterValidator(_distinct),
    AfterValidator(_classes),
]
Names = Annotated[
    tuple[str, ...],
    BeforeValidator(_as_tuple),
    AfterValidator(_distinct),
    AfterValidator(_extra_activations),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DataParams(_Section):
    # where the archive comes from: https://, http://, file:// or a path (relative: to the repo)
    url: Annotated[str, AfterValidator(_url_or_path)]
    sha256: Annotated[str, AfterValidator(_sha256)]  # expected sha256 of that archive
    val_size: int = Field(ge=0)  # training images held out for validation; 0 = the test set
    train_limit: int = Field(ge=0)  # stratified subset of the remaining training images; 0 = all
    seed: int = Field(ge=0)  # seed of the validation split and the subset
    # the classes to keep, by the archive's names, relabelled 0, 1, … in this order; () = all ten.
    # Default () so that params files written before this key existed still read the same.
    classes: ClassNames = ()

    @property
    def n_classes(self) -> int:
        return len(self.classes) or CIFAR10.n_classes

    @property
    def train_images(self) -> int:
        """Training images in the real archive for these classes (CIFAR-10's are balanced)."""
        return CIFAR10.train_images * self.n_classes // CIFAR10.n_classes


class ModelParams(_Section):
    conv_filters: int = Field(gt=0)  # filters of each convolution (tutorial: 32, one convolution)
    kernel_size: int = Field(ge=1, le=32)  # their square kernel side (tutorial: 3)
    pool_size: int = Field(ge=1, le=30)  # max-pooling window side (tutorial: 2)
    dense_units: int = Field(gt=0)  # units of each hidden dense layer (tutorial: 128)
    conv_blocks: int = Field(ge=1, le=4)  # convolution + max-pooling blocks (tutorial: 1)
    dense_layers: int = Field(ge=1, le=8)  # hidden dense layers (tutorial: 1)
    batch_norm: bool  # batch normalisation before each hidden activation (tutorial: no)
    # kernel initialiser of every hidden layer, by Keras name (tutorial: Keras' default)
    initializer: Annotated[str, AfterValidator(_initializer)]
    # the output layer: "softmax", one unit per class (the tutorial's), or "sigmoid", one unit
    # with binary cross-entropy, for two classes only. Default: as before this key existed.
    output: Literal["softmax", "sigmoid"] = "softmax"


class TrainParams(_Section):
    epochs: int = Field(gt=0)  # passes over the training set (tutorial: 10)
    batch_size: int = Field(gt=0)  # images per gradient step (tutorial: 64)
    learning_rate: float = Field(gt=0)  # Adam's step size (tutorial: 1e-3)
    seeds: Seeds  # one model per seed (weights and data order); the first is the primary
    # "none": one device; "mirrored": tf.distribute.MirroredStrategy (pipeline.train)
    distribution: Literal["none", "mirrored"]
    extra_activations: Names  # trained by the stages train_extra beside the main two

    @property
    def activations(self) -> tuple[str, ...]:
        """Every activation a run trains: the main two, then the extras."""
        return (*MAIN_ACTIVATIONS, *self.extra_activations)


class EvaluateParams(_Section):
    n_examples: int = Field(ge=0, le=100)  # fixed test images whose predictions the report shows


class MlflowParams(_Section):
    experiment: Annotated[str, AfterValidator(_name)]  # MLflow experiment every stage logs to


class Params(_Section):
    data: DataParams
    model: ModelParams
    train: TrainParams
    evaluate: EvaluateParams
    mlflow: MlflowParams

    @pydantic.model_validator(mode="after")
    def _fits_the_dataset(self) -> Params:
        """Rules across keys, checked before any stage runs (so before DVC deletes any output):
        the split must fit the training set, and the network must fit the image."""
        check_split(self.data, self.data.train_images)
        check_geometry(self.model, CIFAR10.image_shape[0])
        check_output(self.model, self.data.n_classes)
        return self


def check_output(model: ModelParams, n_classes: int) -> None:
    """A sigmoid output is one unit: it tells two classes apart, not more."""
    if model.output == "sigmoid" and n_classes != 2:
        raise ValueError(
            f"model.output sigmoid needs exactly two classes, but data.classes gives {n_classes}; "
            "set data.classes to two names (e.g. [cat, dog]) or model.output to softmax"
        )


def check_split(data: DataParams, train_images: int) -> None:
    """The validation split and the subset must fit `train_images` (CIFAR-10's 50,000 here, 5,000
    a class when data.classes keeps some; preprocess checks the archive it reads the same way)."""
    if data.val_size >= train_images:
        raise ValueError(
            f"param 'data.val_size' must be less than {train_images:,} (the training images), "
            f"got {data.val_size}; " + _fix("data.val_size")
        )
    if data.train_limit > train_images - data.val_size:
        raise ValueError(
            f"param 'data.train_limit' is {data.train_limit}, but only "
            f"{train_images - data.val_size:,} training images remain after data.val_size; "
            "choose a smaller value or 0 for all"
        )


def check_geometry(model: ModelParams, side: int) -> None:
    """Every convolution and pooling must leave something of a `side`-pixel image."""
    image = side
    for _ in range(model.conv_blocks):
        side -= model.kernel_size - 1
        if side < model.pool_size:
            raise ValueError(
                f"model.kernel_size {model.kernel_size}, model.pool_size {model.pool_size} and "
                f"model.conv_blocks {model.conv_blocks} leave nothing of a {image}-pixel image; "
                "use smaller values or fewer blocks"
            )
        side //= model.pool_size


def _fix(key: str) -> str:
    return f"fix it in params.yaml or override it with `dvc exp run -S {key}=...`"


def _one_line(error: pydantic.ValidationError) -> str:
    """pydantic's first complaint as one line naming the key and the fix."""
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"] if not isinstance(part, int)]
    key = ".".join(loc)
    kind, message = first["type"], first["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return (
                f"unknown params section {key!r}; known sections: {', '.join(Params.model_fields)}"
            )
        known = ", ".join(Params.model_fields[loc[0]].annotation.model_fields)
        return f"unknown param {key!r}; known keys in {loc[0]!r}: {known}; remove or rename it in params.yaml"
    if kind == "missing":
        what = "params section" if len(loc) == 1 else "param"
        return f"missing {what} {key!r}; add it to params.yaml"
    if not loc:  # a rule across keys: its message names them
        return message
    if kind == "model_type":
        return f"params section {key!r} must be a mapping of keys to values; fix params.yaml"
    if kind == "tuple_type":
        message = "Input should be a list"
    return f"param {key!r}: {message}, got {first['input']!r}; " + _fix(key)


def parse_params(raw: Any) -> Params:
    """Validate a params mapping (as loaded from YAML) and return it as frozen models."""
    if not isinstance(raw, dict):
        raise ParamsError(
            "params.yaml must be a mapping with the sections " + ", ".join(Params.model_fields)
        )
    try:
        return Params.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise ParamsError(_one_line(exc)) from None


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


def flatten(section: str, values: BaseModel) -> dict[str, Any]:
    """`flatten("train", TrainParams(...))` → {"train.epochs": 10, ...}, as MLflow logs them."""
    flat = {}
    for key, value in values.model_dump().items():
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
