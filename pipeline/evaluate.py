"""Stage `evaluate`: every selected model on the test set, and the seed means of training.

Reads the models and per-model results of the (activation, seed) pairs that `train.seeds` and
`train.extra_activations` select. Writes `results/test_metrics.json` (what `dvc metrics show`
reads, one block per activation), `results/evaluation.json` (per-class precision/recall/F1 and
confusion matrices), `results/examples.csv` (each model's prediction for `evaluate.n_examples`
fixed test images) and `results/curves/<activation>/` (seed-mean history and diagnostics for DVC
plots, every seed's curves, and the training summary).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from pipeline import activations, cli, outage, serving, store, tracking
from pipeline.cifar import CIFAR10
from pipeline.errors import PipelineError
from pipeline.escape import (
    ESCAPE_THRESHOLD,
    escape_epoch,
    escape_step,
    escape_threshold,
    summarize_history,
)
from pipeline.files import atomic_path
from pipeline.metrics import classification_metrics, cross_entropy, majority_share
from pipeline.model import CUSTOM_OBJECTS
from pipeline.params import STAGE_PARAMS, logged_params
from pipeline.results import (
    HEADLINE,
    SPREAD_KEYS,
    MeanTestMetrics,
    ModelDetails,
    Paired,
    ScoresOnTestSet,
    TrainingSummary,
)
from pipeline.splits import load_split

PREDICT_BATCH = 1000


def predict(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Class probabilities for uint8 images."""
    return np.asarray(model.predict(images, batch_size=PREDICT_BATCH, verbose=0))


def evaluate_predictions(labels: np.ndarray, probabilities: np.ndarray, n_classes: int) -> dict:
    """Everything the report needs about one model's test-set predictions."""
    predicted = probabilities.argmax(axis=1)
    details = classification_metrics(labels, predicted, n_classes)
    details["loss"] = cross_entropy(labels, probabilities)
    details["majority_share"] = majority_share(predicted, n_classes)
    return details


def headline(details: dict) -> dict[str, float]:
    """The few numbers `dvc metrics show` lists per model."""
    return {key: details[source] for key, source in HEADLINE.items()}


def example_table(
    labels: np.ndarray, probabilities: dict[str, np.ndarray], n: int, class_names: Sequence[str]
) -> pd.DataFrame:
    """Predictions for the first `n` test images: the same images on every run."""
    index = np.arange(min(n, len(labels)))
    table = pd.DataFrame({"index": index, "true_class": [class_names[i] for i in labels[index]]})
    for activation, probs in probabilities.items():
        chosen = probs[index].argmax(axis=1)
        table[f"{activation}_predicted"] = [class_names[i] for i in chosen]
        table[f"{activation}_confidence"] = probs[index, chosen].round(4)
    return table


def load_model(path: Path, activation: str) -> keras.Model:
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro` to train it first")
    objects = CUSTOM_OBJECTS | activations.custom_objects([activation])
    return keras.saving.load_model(path, custom_objects=objects)


def read_trained(results: Path, activation: str, seed: int) -> dict:
    """What one train stage wrote: its history, diagnostics and summary."""
    folder = results / activation / f"seed{seed}"
    try:
        return {
            "history": pd.read_csv(folder / "history.csv"),
            "diagnostics": pd.read_csv(folder / "diagnostics.csv"),
            "steps": pd.read_csv(folder / "steps.csv"),
            "summary": json.loads((folder / "train.json").read_text()),
        }
    except FileNotFoundError as exc:
        raise PipelineError(f"{exc.filename} not found; run `dvc repro` to train it") from None


def mean_over_seeds(frames: Sequence[pd.DataFrame], by: str = "epoch") -> pd.DataFrame:
    """Per-epoch (or per-step) mean of per-seed frames (with one seed: that seed's frame)."""
    return pd.concat(frames).groupby(by, as_index=False).mean()


def long_format(frames: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Per-seed frames stacked, with a `seed` column first."""
    first = next(iter(frames.values()))
    return pd.concat([f.assign(seed=s) for s, f in frames.items()])[["seed", *first.columns]]


def escapes(one: dict, threshold: float = ESCAPE_THRESHOLD) -> dict[str, int | None]:
    """When one trained model left chance: its escape epoch and step (None: never)."""
    return {
        "escape_epoch": escape_epoch(one["history"]["val_accuracy"].tolist(), threshold),
        "escape_step": escape_step(one["steps"], threshold),
    }


def training_summary(
    trained: dict[int, dict], threshold: float = ESCAPE_THRESHOLD
) -> TrainingSummary:
    """The seed-mean curve's final and best epoch, and each seed's own escape epoch."""
    history = mean_over_seeds([t["history"] for t in trained.values()])
    summaries = [t["summary"] for t in trained.values()]
    per_seed = {s: escapes(t, threshold) for s, t in trained.items()}
    return TrainingSummary(
        **summarize_history(history, threshold),
        escape_epoch_per_seed={s: e["escape_epoch"] for s, e in per_seed.items()},
        escape_step_per_seed={s: e["escape_step"] for s, e in per_seed.items()},
        steps_per_epoch=summaries[0]["steps_per_epoch"],
        step_curve_images=summaries[0]["step_curve_images"],
        seeds=len(trained),
        parameters=summaries[0]["parameters"],
        train_seconds=round(sum(s["train_seconds"] for s in summaries), 1),
        diagnostics_seconds=round(sum(s["diagnostics_seconds"] for s in summaries), 1),
    )


def write_curves(
    output: Path, trained: dict[str, dict[int, dict]], threshold: float = ESCAPE_THRESHOLD
) -> None:
    """Per activation: seed-mean curves (DVC plots), every seed's curves, the summary."""
    with atomic_path(output) as tmp:
        for activation, per_seed in trained.items():
            folder = tmp / activation
            folder.mkdir(parents=True)
            for kind, fmt, by in (
                ("history", "%.6f", "epoch"),
                ("diagnostics", "%.6g", "epoch"),
                ("steps", "%.6g", "step"),
            ):
                frames = {seed: t[kind] for seed, t in per_seed.items()}
                mean_over_seeds(list(frames.values()), by).to_csv(
                    folder / f"{kind}.csv", index=False, float_format=fmt
                )
                long_format(frames).to_csv(
                    folder / f"{kind}_seeds.csv", index=False, float_format=fmt
                )
            training_summary(per_seed, threshold).write(folder / "train.json")


def unselected(
    models: Path, trained: Path, activations: Sequence[str], seeds: Sequence[int]
) -> list[Path]:
    """Models and train results left from pairs the params no longer select (a removed seed)."""
    pairs = {(a, f"seed{s}") for a in activations for s in seeds}
    found = [*models.glob("*/seed*.keras"), *trained.glob("*/seed*")]
    return sorted(p for p in found if (p.parent.name, p.name.removesuffix(".keras")) not in pairs)


@dataclass
class EvaluatedModels:
    """Every selected model scored on the test set, in memory: no file written, nothing logged."""

    scored: ScoresOnTestSet  # the numbers, as evaluate writes them and the report reads them back
    examples: pd.DataFrame  # each primary model's prediction for the first test images
    primary: dict[str, keras.Model]  # activation → the primary seed's model


def compute(
    models: Mapping[tuple[str, int], keras.Model],
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    n_examples: int,
) -> EvaluatedModels:
    """Score `models` ({(activation, seed): model}, the primary seed first) on the test split."""
    seeds = list(dict.fromkeys(seed for _, seed in models))
    per_seed: dict[str, dict[int, dict[str, float]]] = {}
    found, primary, probabilities = {}, {}, {}
    for (activation, seed), model in models.items():
        predicted = predict(model, images)
        numbers = evaluate_predictions(labels, predicted, len(class_names))
        per_seed.setdefault(activation, {})[seed] = headline(numbers)
        if seed == seeds[0]:  # the primary model: per-class detail, examples, registry
            primary[activation], probabilities[activation] = model, predicted
            found[activation] = numbers
    scored = ScoresOnTestSet(
        class_names=list(class_names),
        seeds=seeds,
        scores={a: MeanTestMetrics.over_seeds(numbers) for a, numbers in per_seed.items()},
        details={a: ModelDetails(**found[a], per_seed=per_seed[a]) for a in per_seed},
        paired={
            key: Paired.of(
                [per_seed["relu"][s][key] for s in seeds],
                [per_seed["sigmoid"][s][key] for s in seeds],
            )
            for key in SPREAD_KEYS
        },
    )
    return EvaluatedModels(
        scored, example_table(labels, probabilities, n_examples, class_names), primary
    )


def write(evaluated: EvaluatedModels, trained: dict, results: Path) -> None:
    """evaluate's files, each atomically."""
    # Chance is 1 / classes: data.classes may keep fewer than ten.
    write_curves(results / "curves", trained, escape_threshold(len(evaluated.scored.class_names)))
    evaluated.scored.write(results)
    with atomic_path(results / "examples.csv") as tmp:
        evaluated.examples.to_csv(tmp, index=False)


def logging_steps(
    evaluated: EvaluatedModels, trained: dict, results: Path, models: Path, run, params
) -> list[outage.Step]:
    """What evaluate logs, each step named for the outage message: its metrics and files, test
    scores onto the training runs (the number of runs that got them) and the registry (the
    registered versions)."""
    scored = evaluated.scored
    metrics = {
        f"{activation}.{key}": value
        for activation, scores in scored.scores.items()
        for key, value in scores.model_dump().items()
        if value is not None
    }
    metrics |= {f"relu_minus_sigmoid.{k}": p.difference.mean for k, p in scored.paired.items()}
    numbers = {(a, s): n for a, d in scored.details.items() for s, n in d.per_seed.items()}
    # Each model's escape, as evaluate derives it, onto its training run beside its test scores.
    for activation, per_seed in trained.items():
        for seed, one in per_seed.items():
            numbers[activation, seed] = numbers[activation, seed] | {
                k: v for k, v in escapes(one).items() if v is not None
            }
    tags = {k: v for k, v in run.data.tags.items() if k in ("git_commit", "dvc_experiment")}
    runs: dict[tuple[str, int], list] = {}

    def find_training_runs() -> None:
        runs.update(serving.training_runs(models, list(numbers), run.info.experiment_id))

    def log_files() -> None:
        for name in ("test_metrics.json", "evaluation.json", "examples.csv"):
            tracking.log_artifact(str(results / name))
        tracking.log_artifacts(str(results / "curves"), artifact_path="curves")

    def register() -> dict[str, str]:
        experiment, seed = params.mlflow.experiment, params.train.seeds[0]
        test = {
            a: {"test_accuracy": x.accuracy.mean, "test_loss": x.loss.mean}
            for a, x in scored.scores.items()
        }
        return serving.register_primary_models(
            evaluated.primary, runs, experiment, seed, test, tags, scored.champion
        )

    return [
        ("the test metrics", lambda: tracking.log_metrics(metrics)),
        ("the result files", log_files),
        ("the search for the training runs", find_training_runs),
        (
            "test metrics on the training runs",
            lambda: serving.log_test_metrics_to_train_runs(runs, numbers),
        ),
        ("the registered models", register),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = cli.stage_parser(__doc__, "data", "models", "trained", "results")
    args, params = cli.parse_stage(parser, argv)
    selected, seeds = params.train.activations, params.train.seeds
    trained = {a: {s: read_trained(args.trained, a, s) for s in seeds} for a in selected}
    images, labels = load_split(args.data, "test")
    class_names = json.loads((args.data / "meta.json").read_text())["class_names"]
    logged = logged_params(params, STAGE_PARAMS["evaluate"]) | {"activations": ",".join(selected)}
    with tracking.stage_run("evaluate", params.mlflow.experiment, logged) as run:
        store.log_split(
            f"{CIFAR10.name}-test", "test", images, labels, params.data.url, args.data / "test.npz"
        )
        models = {
            (a, s): load_model(args.models / a / f"seed{s}.keras", a)
            for a in selected
            for s in seeds
        }
        evaluated = compute(models, images, labels, class_names, params.evaluate.n_examples)
        write(evaluated, trained, args.results)
        steps = logging_steps(evaluated, trained, args.results, args.models, run, params)
        *_, linked, versions = outage.run_logging_steps("evaluate", steps)
    report_to_console(evaluated, versions, linked, params, args)


def report_to_console(evaluated: EvaluatedModels, versions, linked: int, params, args) -> None:
    """Leftover models to remove, the registry, and each activation's test numbers."""
    selected, seeds = params.train.activations, params.train.seeds
    for path in unselected(args.models, args.trained, selected, seeds):
        print(
            f"note: {path} is from a seed or activation the params no longer select and was not "
            "evaluated; remove it and run `dvc repro` (nothing retrains) so that dvc.lock matches "
            "a fresh checkout. DVC's cache keeps every model."
        )
    champion = serving.registered_name(params.mlflow.experiment, evaluated.scored.champion)
    print(
        f"registered {', '.join(f'{n} v{v}' for n, v in versions.items())}; champion: "
        f"models:/{champion}@{serving.CHAMPION}; test metrics added to {linked} training run(s)"
    )
    for activation, scores in evaluated.scored.scores.items():
        print(
            f"{activation}: test accuracy {scores.accuracy.mean:.4f}, "
            f"test loss {scores.loss.mean:.4f} (mean of {scores.seeds} seed(s))"
        )


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
