"""Models as MLflow serves them: the logged form, the registry and the champion alias, and the
training runs found from a model file.

A logged model holds only Keras' own layers (pipeline.model.export_model), so it loads with
`mlflow.pyfunc.load_model` or `mlflow.keras.load_model` where this package is not installed, and
`mlflow models serve` answers `{"inputs": <uint8 images (n, 32, 32, 3)>}` with n × 10
probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import mlflow
import numpy as np
import tensorflow as tf
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from pipeline import activations
from pipeline.cifar import IMAGE_SHAPE, N_CLASSES
from pipeline.files import sha256_file
from pipeline.model import export_model

# The alias the best activation's registered model carries; moved on every evaluate run.
CHAMPION = "champion"


def model_signature(n_classes: int = N_CLASSES) -> ModelSignature:
    """uint8 images in, class probabilities out (one per class data.classes kept)."""
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, *IMAGE_SHAPE), "image")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, n_classes), "probabilities")]),
    )


def pip_requirements() -> list[str]:
    """Stated, so MLflow need not load the model in a subprocess to infer them."""
    return [f"keras=={keras.__version__}", f"tensorflow=={tf.__version__}"]


def log_served_model(model: keras.Model, activation: str):
    """Log the trained `model` in its servable form to the active run; returns MLflow's ModelInfo.

    A model with a user's own activation needs that code to load: it is logged beside the model
    (under `code/` in the run's artifacts) and named in the model's metadata (`activation`), and
    the loader must import it first (docs/params.md). No input example: with Keras 3 in MLflow
    3.17, `input_example` fails while saving (FileNotFoundError on input_example.json, the
    folder is made only afterwards).
    """
    code = activations.code_path(activation)
    if code is not None and code.is_dir():
        mlflow.log_artifacts(str(code), f"code/{code.name}")  # the whole package, by its name
    elif code is not None:
        mlflow.log_artifact(str(code), "code")
    return mlflow.keras.log_model(
        export_model(model),
        name=activations.slug(activation),
        signature=model_signature(model.output_shape[-1]),
        pip_requirements=pip_requirements(),
        metadata={"activation": activation} if code is not None else None,
    )


def registered_name(experiment: str, activation: str) -> str:
    """One registered model per activation, e.g. `cifar10-activations-relu`."""
    return f"{experiment}-{activations.slug(activation)}"


def register(
    model: keras.Model,
    model_id: str | None,
    name: str,
    activation: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
) -> str:
    """Register a new version of `name`; return it. `model_id` is the model its training run
    logged, registered as it is (the version then points at the run that trained it); without
    one (a model DVC restored from a run logged to another store), `model` is logged to the
    active run first."""
    if model_id is None:
        model_id = log_served_model(model, activation).model_id
    version = str(mlflow.register_model(f"models:/{model_id}", name).version)
    mlflow.log_metrics(dict(metrics), model_id=model_id)
    client = mlflow.MlflowClient()
    for key, value in {**tags, **{k: f"{v:.4f}" for k, v in metrics.items()}}.items():
        client.set_model_version_tag(name, version, key, value)
    return version


def move_champion_alias(versions: Mapping[str, str], champion: str) -> None:
    """Give `champion`'s version the champion alias and take it from every other name."""
    client = mlflow.MlflowClient()
    for name, version in versions.items():
        if name == champion:
            client.set_registered_model_alias(name, CHAMPION, version)
        elif CHAMPION in client.get_registered_model(name).aliases:
            client.delete_registered_model_alias(name, CHAMPION)


def training_runs(
    models: Path, pairs: Sequence[tuple[str, int]], experiment_id: str
) -> dict[tuple[str, int], list]:
    """The runs that trained each (activation, seed) model, found by the model file's sha256,
    which train tagged: that works in any store and for models DVC restored from its cache. A
    model trained against another store has none here."""
    client = mlflow.MlflowClient()
    found = {}
    for activation, seed in pairs:
        digest = sha256_file(models / activation / f"seed{seed}.keras")
        found[activation, seed] = client.search_runs(
            [experiment_id], filter_string=f"tags.model_sha256 = '{digest}'"
        )
    return found


def log_test_metrics_to_train_runs(
    runs: Mapping[tuple[str, int], list], numbers: Mapping[tuple[str, int], dict]
) -> int:
    """Add each model's test accuracy and loss, and its escape epoch and step (when it left
    chance), to the run that trained it, so the runs table ranks and sorts by them. Returns how
    many runs got metrics."""
    client = mlflow.MlflowClient()
    linked = 0
    for pair, pair_runs in runs.items():
        for run in pair_runs:
            for key in ("test_accuracy", "test_loss", "escape_epoch", "escape_step"):
                if key in numbers[pair]:
                    client.log_metric(run.info.run_id, key, numbers[pair][key])
            linked += 1
    return linked


def logged_model_id(runs: list) -> str | None:
    """The model the newest of `runs` logged, if any."""
    for run in sorted(runs, key=lambda r: r.info.start_time, reverse=True):
        if run.outputs and run.outputs.model_outputs:
            return run.outputs.model_outputs[0].model_id
    return None


def register_primary_models(
    primary: Mapping[str, keras.Model],
    runs: Mapping[tuple[str, int], list],
    experiment: str,
    seed: int,
    test: Mapping[str, Mapping[str, float]],
    tags: dict[str, str],
    champion: str,
) -> dict[str, str]:
    """Each activation's primary-seed model as a new registered version, with its `test`
    numbers (mean test accuracy and loss); `champion`'s gets the champion alias. Returns
    {registered name: version}."""
    versions = {}
    for activation, model in primary.items():
        name = registered_name(experiment, activation)
        versions[name] = register(
            model,
            logged_model_id(runs[activation, seed]),
            name,
            activation,
            tags | {"activation": activation, "seed": str(seed)},
            test[activation],
        )
    move_champion_alias(versions, registered_name(experiment, champion))
    return versions
