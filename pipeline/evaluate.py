"""Stage `evaluate`: every trained model on the test set.

Writes `results/test_metrics.json` (what `dvc metrics show` reads, one block per activation),
`results/evaluation.json` (per-class precision/recall/F1 and confusion matrices) and
`results/examples.csv` (each model's prediction for `evaluate.n_examples` fixed test images).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd

from pipeline import tracking
from pipeline.errors import PipelineError, run_cli
from pipeline.files import atomic_path, write_json
from pipeline.metrics import classification_metrics, cross_entropy, majority_share
from pipeline.model import CUSTOM_OBJECTS
from pipeline.params import flatten, load_params
from pipeline.preprocess import load_split
from pipeline.stats import paired_difference, summarize_values

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
    return {
        "test_accuracy": details["accuracy"],
        "test_loss": details["loss"],
        "macro_precision": details["macro_precision"],
        "macro_recall": details["macro_recall"],
        "macro_f1": details["macro_f1"],
        "majority_share": details["majority_share"],
    }


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


def load_model(path: Path) -> keras.Model:
    if not path.is_file():
        raise PipelineError(f"{path} not found; run `dvc repro` to train it first")
    return keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS)


def summarize_seeds(per_seed: dict[int, dict]) -> dict:
    """Mean over seeds of the headline numbers, with spread and 95% t-intervals."""
    first = next(iter(per_seed.values()))
    summary = {key: float(np.mean([d[key] for d in per_seed.values()])) for key in first}
    for key in ("test_accuracy", "test_loss"):
        spread = summarize_values([d[key] for d in per_seed.values()])
        summary |= {
            f"{key}_std": spread["std"],
            f"{key}_ci_low": spread["ci_low"],
            f"{key}_ci_high": spread["ci_high"],
        }
    return summary | {"seeds": len(per_seed)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    activations = params.train.activations
    seeds = params.train.seeds
    images, labels = load_split(args.data, "test")
    class_names = json.loads((args.data / "meta.json").read_text())["class_names"]
    logged = flatten("evaluate", params.evaluate) | {
        "train.seeds": flatten("train", params.train)["train.seeds"],
        "activations": ",".join(activations),
    }
    with tracking.stage_run("evaluate", params.mlflow.experiment, logged):
        primary_probabilities, details, metrics = {}, {}, {}
        for activation in activations:
            per_seed = {}
            for seed in seeds:
                model = load_model(args.models / activation / f"seed{seed}.keras")
                probabilities = predict(model, images)
                found = evaluate_predictions(labels, probabilities, len(class_names))
                per_seed[seed] = headline(found)
                if seed == seeds[0]:  # the primary model: per-class detail and examples
                    primary_probabilities[activation] = probabilities
                    details[activation] = found
            details[activation]["per_seed"] = {str(s): d for s, d in per_seed.items()}
            metrics[activation] = summarize_seeds(per_seed)
        paired = {
            key: paired_difference(
                [details["relu"]["per_seed"][str(s)][key] for s in seeds],
                [details["sigmoid"]["per_seed"][str(s)][key] for s in seeds],
            )
            for key in ("test_accuracy", "test_loss")
        }
        examples = example_table(
            labels, primary_probabilities, params.evaluate.n_examples, class_names
        )
        write_json(args.results / "test_metrics.json", metrics)
        write_json(
            args.results / "evaluation.json",
            {
                "class_names": class_names,
                "seeds": list(seeds),
                "models": details,
                "relu_minus_sigmoid": paired,
            },
        )
        with atomic_path(args.results / "examples.csv") as tmp:
            examples.to_csv(tmp, index=False)
        for activation, numbers in metrics.items():
            mlflow.log_metrics(
                {f"{activation}.{k}": v for k, v in numbers.items() if v is not None}
            )
        mlflow.log_metrics({f"relu_minus_sigmoid.{k}": v["mean"] for k, v in paired.items()})
        for name in ("test_metrics.json", "evaluation.json", "examples.csv"):
            mlflow.log_artifact(str(args.results / name))
    for activation, numbers in metrics.items():
        print(
            f"{activation}: test accuracy {numbers['test_accuracy']:.4f}, "
            f"test loss {numbers['test_loss']:.4f} (mean of {numbers['seeds']} seed(s))"
        )


if __name__ == "__main__":
    sys.exit(run_cli(main))
