"""What the stages take from params.yaml besides their computation: the MLflow experiment every
stage logs to, the models evaluate and the report read, and the seed a train stage defaults to
and trains with."""

import contextlib
import json

import numpy as np
import pytest
from project import write_params

from pipeline import download, evaluate, preprocess, report, tracking, train
from pipeline.params import load_params


class Opened(Exception):
    """Raised where the stage would open its MLflow run: nothing after it matters here."""


@pytest.fixture
def opened(monkeypatch):
    """The (stage, experiment) of each MLflow run a stage opens; the stage stops there."""
    calls = []

    @contextlib.contextmanager
    def stage_run(stage, experiment, params, *args, **kwargs):
        calls.append((stage, experiment))
        raise Opened
        yield

    monkeypatch.setattr(tracking, "stage_run", stage_run)
    return calls


def test_stages_log_to_the_named_experiment_and_read_what_the_params_select(
    tmp_path, opened, monkeypatch
):
    params = write_params(
        tmp_path / "params.yaml",
        mlflow__experiment="not-the-default",
        train__seeds=[7, 3],
        train__extra_activations=["tanh"],
    )
    # What the stages read before opening their run, as little as lets them get there.
    images, labels = np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 1])
    read = []
    monkeypatch.setattr(train, "load_training_data", lambda data: ((images, labels),) * 2)
    monkeypatch.setattr(evaluate, "read_trained", lambda _, *pair: read.append(pair))
    monkeypatch.setattr(evaluate, "load_split", lambda *args: (images, labels))
    monkeypatch.setattr(report, "read_results", lambda _, __, selected: read.append(selected))
    (tmp_path / "archive.tar.gz").write_bytes(b"")
    (tmp_path / "meta.json").write_text(json.dumps({"class_names": list("abcdefghij")}))
    out, data = str(tmp_path / "out"), str(tmp_path)
    stages = {
        "download": (download.main, ["--output", out]),
        "preprocess": (preprocess.main, ["--archive", f"{data}/archive.tar.gz", "--output", out]),
        "train_relu@7": (  # no --seed: the first of train.seeds
            train.main,
            ["--activation", "relu", "--data", data, "--models", out, "--results", out],
        ),
        "evaluate": (
            evaluate.main,
            ["--data", data, "--models", out, "--trained", out, "--results", out],
        ),
        "report": (
            report.main,
            [
                *("--data", data, "--results", out, "--output", out),
                *("--study", out),
            ],
        ),
    }
    for main, argv in stages.values():
        with pytest.raises(Opened):
            main(["--params", str(params), *argv])
    assert opened == [(stage, "not-the-default") for stage in stages]
    # Evaluate reads every selected model's training results, the primary seed first; the
    # report, every selected activation's.
    activations = ("sigmoid", "relu", "tanh")
    assert read == [(a, s) for a in activations for s in (7, 3)] + [activations]


def test_evaluate_scores_every_selected_model_the_primary_seed_first(tmp_path, monkeypatch):
    """Inside its run, evaluate loads the model of every (activation, seed) the params select
    and hands them to `compute` in that order (the first seed's model is the primary), with
    the test split and evaluate.n_examples."""
    params = write_params(
        tmp_path / "params.yaml",
        train__seeds=[7, 3],
        train__extra_activations=["tanh"],
        evaluate__n_examples=3,
    )
    images, labels = np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 1])
    (tmp_path / "meta.json").write_text(json.dumps({"class_names": list("abcdefghij")}))
    monkeypatch.setattr(tracking, "stage_run", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(evaluate.store, "log_split", lambda *args: None)
    monkeypatch.setattr(evaluate, "read_trained", lambda *args: {})
    splits = []
    monkeypatch.setattr(
        evaluate, "load_split", lambda _, name: splits.append(name) or (images, labels)
    )
    monkeypatch.setattr(evaluate, "load_model", lambda path, activation: (path, activation))
    handed = {}

    def compute(models, images, labels, class_names, n_examples):
        handed.update(models=list(models.items()), n_examples=n_examples)
        raise Opened  # the scoring itself: test_evaluate's

    monkeypatch.setattr(evaluate, "compute", compute)
    out, data = tmp_path / "out", str(tmp_path)
    argv = ["--params", str(params), "--data", data, "--models", str(out)]
    with pytest.raises(Opened):
        evaluate.main([*argv, "--trained", str(out), "--results", str(out)])
    pairs = [(a, s) for a in ("sigmoid", "relu", "tanh") for s in (7, 3)]
    assert handed["models"] == [((a, s), (out / a / f"seed{s}.keras", a)) for a, s in pairs]
    assert handed["n_examples"] == 3 and splits == ["test"]


def test_a_train_stage_without_seed_trains_the_first_of_train_seeds(tmp_path):
    params = load_params(write_params(tmp_path / "params.yaml", train__seeds=[7, 3]))
    assert train.check_seed(None, params) == 7
    assert train.check_seed(3, params) == 3


def test_a_train_stage_seeds_its_weights_and_data_order_with_its_own_seed(tmp_path, monkeypatch):
    """`train.compute` for seed 3 of train.seeds [7, 3]: the seed every random draw of training
    comes from is 3, not the first of train.seeds (which would train every seed's model alike)."""
    params = load_params(write_params(tmp_path / "params.yaml", train__seeds=[7, 3]))
    seeded = []

    class Seeded(Exception):
        """Raised where training would start: nothing after it matters here."""

    def seed_everything(seed):
        seeded.append(seed)
        raise Seeded

    monkeypatch.setattr(train, "seed_everything", seed_everything)
    data = (np.zeros((20, 32, 32, 3), np.uint8), np.arange(20) % 10)
    with pytest.raises(Seeded):
        train.compute("relu", 3, params, data, data)
    assert seeded == [3]
