"""Stage `report`: everything upstream → `reports/report.md` and its figures.

Every sentence that states a result is computed from this run's files; the tutorial's numbers
appear only in the column that says they are the tutorial's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from pipeline import plots, tracking
from pipeline.errors import PipelineError, run_cli
from pipeline.files import atomic_path
from pipeline.metrics import ESCAPE_THRESHOLD, escape_epoch
from pipeline.params import Params, flatten, load_params
from pipeline.preprocess import load_split

# The tutorial's published validation numbers after 10 epochs (it validated on the test set).
TUTORIAL_EPOCH = 10
TUTORIAL = {
    "sigmoid": {"val_accuracy": 0.4672, "val_loss": 1.4827},
    "relu": {"val_accuracy": 0.6323, "val_loss": 1.1895},
}


@dataclasses.dataclass(frozen=True)
class RunResults:
    # Per activation: epoch, loss, accuracy, val_loss, val_accuracy.
    histories: dict[str, pd.DataFrame]
    # Per activation: the probe's gradient norms and unit statistics, from epoch 0 on.
    diagnostics: dict[str, pd.DataFrame]
    # Per activation: every seed's history (a `seed` column); one seed = the history above.
    seed_histories: dict[str, pd.DataFrame]
    # ReLU − sigmoid test accuracy and loss, paired by seed (n, mean, std, ci_low, ci_high).
    paired: dict[str, dict]
    test: dict[str, dict[str, float]]  # per activation: test_accuracy, test_loss, ...
    details: dict[str, dict]  # per activation: per-class lists and confusion matrix
    examples: pd.DataFrame  # fixed test images with each model's prediction
    class_names: list[str]
    validation_source: str  # "train" (held-out split) or "test" (the tutorial's way)


def read_results(results: Path, data: Path, activations: Sequence[str]) -> RunResults:
    """Load what the train and evaluate stages wrote."""
    try:
        curves = results / "curves"
        histories = {a: pd.read_csv(curves / a / "history.csv") for a in activations}
        diagnostics = {a: pd.read_csv(curves / a / "diagnostics.csv") for a in activations}
        seed_histories = {a: pd.read_csv(curves / a / "history_seeds.csv") for a in activations}
        evaluation = json.loads((results / "evaluation.json").read_text())
        meta = json.loads((data / "meta.json").read_text())
        return RunResults(
            histories=histories,
            diagnostics=diagnostics,
            seed_histories=seed_histories,
            paired=evaluation.get("relu_minus_sigmoid", {}),
            test=json.loads((results / "test_metrics.json").read_text()),
            details=evaluation["models"],
            examples=pd.read_csv(results / "examples.csv"),
            class_names=meta["class_names"],
            validation_source=meta["validation_source"],
        )
    except FileNotFoundError as exc:
        raise PipelineError(f"{exc.filename} not found; run `dvc repro` to produce it") from None


def findings(results: RunResults) -> list[str]:
    """Plain sentences, each computed from this run's numbers."""
    lines = []
    test = results.test
    if {"sigmoid", "relu"} <= test.keys():
        gap = test["relu"]["test_accuracy"] - test["sigmoid"]["test_accuracy"]
        better = "ReLU" if gap > 0 else "sigmoid"
        lines.append(
            f"On the test set, ReLU reached accuracy {test['relu']['test_accuracy']:.4f} and sigmoid "
            f"{test['sigmoid']['test_accuracy']:.4f}: {better} is ahead by {abs(gap) * 100:.1f} points."
        )
        paired = results.paired.get("test_accuracy")
        if paired and paired["n"] > 1:
            lines.append(
                f"Paired by seed over {paired['n']} seeds (same initial draw for both), ReLU − "
                f"sigmoid test accuracy is {paired['mean']:+.4f} (std {paired['std']:.4f}, 95% CI "
                f"[{paired['ci_low']:+.4f}, {paired['ci_high']:+.4f}])."
            )
    for activation, history in results.histories.items():
        first = history.iloc[0]
        escaped = escape_epoch(history["val_accuracy"].tolist())
        if escaped is None:
            when = f"never exceeded {ESCAPE_THRESHOLD:.2f} in {len(history)} epochs"
        elif escaped == 1:
            when = f"exceeded {ESCAPE_THRESHOLD:.2f} after the first epoch"
        else:
            when = f"stayed at or below {ESCAPE_THRESHOLD:.2f} until epoch {escaped}"
        lines.append(
            f"{activation}: validation accuracy {first['val_accuracy']:.4f} after epoch 1; it {when}; "
            f"best {history['val_accuracy'].max():.4f} at epoch "
            f"{int(history.loc[history['val_accuracy'].idxmax(), 'epoch'])}."
        )
        seeds = results.seed_histories[activation]
        if seeds["seed"].nunique() > 1:
            escapes = [escape_epoch(g["val_accuracy"].tolist()) for _, g in seeds.groupby("seed")]
            shown = ", ".join("never" if e is None else str(e) for e in escapes)
            lines.append(f"{activation}: escape epoch per seed: {shown}.")
        share = results.test[activation]["majority_share"]
        if share > 0.5:
            lines.append(
                f"{activation}: {share:.0%} of its test predictions fall on one class, "
                "the mark of a model still at chance."
            )
    return lines


def _ratio_sentence(what: str, a_name: str, a: float, b_name: str, b: float) -> str:
    """'`what` was smaller for A (x) than for B (y), by a factor of k.'"""
    (small_name, small), (large_name, large) = sorted(
        [(a_name, a), (b_name, b)], key=lambda pair: pair[1]
    )
    factor = large / small if small > 0 else float("inf")
    return (
        f"{what} was smaller for {small_name} ({small:.3g}) than for {large_name} "
        f"({large:.3g}), by a factor of {factor:.3g}."
    )


# Diagnostics columns that count units in a state, and how a sentence names that state.
UNIT_STATES = {"saturated_fraction/": "outputs were saturated", "dead_fraction/": "units were dead"}


def evidence(results: RunResults) -> list[str]:
    """Why the two differ, as measured on the probe batch: each sentence computed from the files."""
    diags = results.diagnostics
    lines = []
    if {"sigmoid", "relu"} <= diags.keys():
        sig0, relu0 = diags["sigmoid"].iloc[0], diags["relu"].iloc[0]
        for layer, label in (("conv2d", "first layer (conv2d)"), ("dense", "hidden dense layer")):
            column = f"grad_norm/{layer}/kernel"
            if column in sig0 and column in relu0:
                lines.append(
                    _ratio_sentence(
                        f"At initialisation (epoch 0), the loss gradient of the {label} kernel",
                        "sigmoid",
                        sig0[column],
                        "ReLU",
                        relu0[column],
                    )
                )
    for activation, frame in diags.items():
        first, last = frame.iloc[0], frame.iloc[-1]
        kernels = [c for c in frame.columns if c.startswith("grad_norm/") and c.endswith("/kernel")]
        inner, outer = (kernels[0], kernels[-1]) if kernels else (None, None)
        if inner and inner != outer and first[inner] > 0:
            lines.append(
                f"{activation}: at epoch 0 the output layer's kernel gradient was "
                f"{first[outer] / first[inner]:.3g}× the first layer's; at epoch "
                f"{int(last['epoch'])}, {last[outer] / last[inner]:.3g}×."
            )
        for prefix, what in UNIT_STATES.items():
            for column in [c for c in frame.columns if c.startswith(prefix)]:
                peak_epoch = int(frame.loc[frame[column].idxmax(), "epoch"])
                lines.append(
                    f"{activation}: {first[column]:.1%} of {column.removeprefix(prefix)} {what} "
                    f"at epoch 0 and {last[column]:.1%} at epoch {int(last['epoch'])} "
                    f"(peak {frame[column].max():.1%}, epoch {peak_epoch})."
                )
        plateau = frame["plateau_share"]
        lines.append(
            f"{activation}: the most-predicted class took {plateau.iloc[0]:.0%} of validation "
            f"predictions at epoch 0, {plateau.iloc[1]:.0%} after epoch 1 and "
            f"{plateau.iloc[-1]:.0%} at the end (10% = balanced)."
        )
    for activation, history in results.histories.items():
        escaped = escape_epoch(history["val_accuracy"].tolist())
        lines.append(
            f"{activation}: escape epoch (first validation accuracy above {ESCAPE_THRESHOLD:.2f}): "
            + (f"{escaped}." if escaped else f"none in {len(history)} epochs.")
        )
    return lines


def comparison_table(results: RunResults) -> str:
    """This run's final-epoch and test numbers beside the tutorial's epoch-10 numbers."""
    rows = [
        "| model | epochs | val accuracy | val loss | test accuracy | test loss "
        f"| tutorial val accuracy (epoch {TUTORIAL_EPOCH}) | tutorial val loss |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for activation, history in [(a, h) for a, h in results.histories.items() if a in TUTORIAL]:
        last = history.iloc[-1]
        test = results.test[activation]
        tutorial = TUTORIAL.get(activation, {})
        rows.append(
            f"| {activation} | {int(last['epoch'])} | {last['val_accuracy']:.4f} | "
            f"{last['val_loss']:.4f} | {_with_spread(test, 'test_accuracy')} | "
            f"{_with_spread(test, 'test_loss')} | "
            f"{tutorial.get('val_accuracy', float('nan')):.4f} | "
            f"{tutorial.get('val_loss', float('nan')):.4f} |"
        )
    return "\n".join(rows)


def _with_spread(test: dict, key: str) -> str:
    """'0.6257' for one seed; '0.6257 ± 0.0040 [0.6207, 0.6307]' (std, 95% CI) for several."""
    if test.get(f"{key}_std") is None:
        return f"{test[key]:.4f}"
    return (
        f"{test[key]:.4f} ± {test[f'{key}_std']:.4f} "
        f"[{test[f'{key}_ci_low']:.4f}, {test[f'{key}_ci_high']:.4f}]"
    )


def ranking_table(results: RunResults) -> str:
    """Every activation trained, best mean test accuracy first."""
    rows = [
        "| rank | activation | seeds | test accuracy (mean ± std [95% CI]) | test loss | "
        "escape epoch (mean curve) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    ranked = sorted(results.test.items(), key=lambda item: -item[1]["test_accuracy"])
    for rank, (activation, test) in enumerate(ranked, start=1):
        escaped = escape_epoch(results.histories[activation]["val_accuracy"].tolist())
        rows.append(
            f"| {rank} | {activation} | {test['seeds']} | "
            f"{_with_spread(test, 'test_accuracy')} | {_with_spread(test, 'test_loss')} | "
            f"{escaped or 'never'} |"
        )
    return "\n".join(rows)


def per_class_table(results: RunResults) -> str:
    """F1 per class for each model."""
    activations = list(results.details)
    rows = [
        "| class | " + " | ".join(f"{a} F1" for a in activations) + " |",
        "| --- |" + " --- |" * len(activations),
    ]
    for i, name in enumerate(results.class_names):
        rows.append(
            f"| {name} | "
            + " | ".join(f"{results.details[a]['f1'][i]:.3f}" for a in activations)
            + " |"
        )
    return "\n".join(rows)


def build_figures(
    results: RunResults, train_data: tuple[np.ndarray, np.ndarray], test_images: np.ndarray
) -> dict[str, Figure]:
    activations = list(results.histories)
    return {
        "activations.png": plots.activation_figure(),
        "samples.png": plots.sample_grid(*train_data, results.class_names),
        "curves.png": plots.curves_figure(results.histories, results.seed_histories),
        "examples.png": plots.examples_figure(test_images, results.examples, activations),
        "gradients.png": plots.gradient_figure(results.diagnostics),
        "units.png": plots.units_figure(results.diagnostics),
        "confusion.png": plots.confusion_figure(
            {a: np.array(results.details[a]["confusion"]) for a in activations}, results.class_names
        ),
        "seeds.png": plots.seed_strip_figure(
            {
                a: [d["test_accuracy"] for d in results.details[a]["per_seed"].values()]
                for a in activations
            }
        ),
    }


def render_markdown(results: RunResults, params: Params) -> str:
    """The report's text; figures are referenced relative to the report."""
    validation = (
        "the test set, as the tutorial did (so the validation numbers are optimistic)"
        if results.validation_source == "test"
        else f"{params.data.val_size:,} images held out of the training set (the test set is "
        "used only by `evaluate`)"
    )
    params_yaml = yaml.safe_dump(dataclasses.asdict(params), sort_keys=False)
    sections = [
        "# Sigmoid vs ReLU on CIFAR-10",
        "Generated by `dvc repro` (stage `report`); every number below comes from this run's files.",
        "## What this run found",
        "\n".join(f"- {line}" for line in findings(results)),
        "## This run beside the tutorial",
        f"Validation here is {validation}. The tutorial's columns are its published numbers.",
        comparison_table(results),
        "## All activations, ranked",
        "Mean over seeds; ± is the standard deviation across seeds, brackets the 95% t-interval "
        "of the mean (shown when there is more than one seed).",
        ranking_table(results),
        "![Test accuracy of every seed](figures/seeds.png)",
        "## Why: gradients, saturation, dead units",
        "Measured during training on a fixed probe batch of "
        "training images (the same every epoch), at initialisation and after every epoch.",
        "\n".join(f"- {line}" for line in evidence(results)),
        "![Kernel gradient norm per layer and epoch](figures/gradients.png)",
        "![Saturated and dead units, and the plateau](figures/units.png)",
        "## Sigmoid and ReLU",
        "Sigmoid's derivative is at most 0.25 and vanishes for large inputs of either sign; "
        "ReLU's is exactly 1 for every positive input.",
        "![Sigmoid and ReLU with their derivatives](figures/activations.png)",
        "## The data",
        "![CIFAR-10 training images, one column per class](figures/samples.png)",
        "## Learning curves",
        "Lines are means over seeds; with several seeds, shaded bands span the lowest to the "
        "highest seed.",
        "![Validation accuracy and loss per epoch](figures/curves.png)",
        "## Predictions on test images",
        f"The first {len(results.examples)} test images, the same on every run.",
        "![Test images with each model's prediction](figures/examples.png)",
        "## Per class",
        per_class_table(results),
        "![Confusion matrices](figures/confusion.png)",
        "## Params",
        f"```yaml\n{params_yaml}```",
    ]
    return "\n\n".join(sections) + "\n"


def write_report(output: Path, markdown: str, figures: Mapping[str, Figure]) -> None:
    """Write figures/ and report.md into `output`, each replaced only once it is complete.

    Only those two: the folder also keeps the studies' reports (reports/studies/).
    """
    with atomic_path(output / "figures") as tmp:
        tmp.mkdir()
        for name, figure in figures.items():
            figure.savefig(tmp / name, dpi=100)
    with atomic_path(output / "report.md") as tmp:
        tmp.write_text(markdown)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data", type=Path, default=Path("data/processed"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--output", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    params = load_params(args.params)
    activations = params.train.activations
    results = read_results(args.results, args.data, activations)
    logged = {}
    for field in dataclasses.fields(params):
        if field.name != "mlflow":
            logged |= flatten(field.name, getattr(params, field.name))
    with tracking.stage_run("report", params.mlflow.experiment, logged):
        train_data = load_split(args.data, "train")
        test_images, _ = load_split(args.data, "test")
        figures = build_figures(results, train_data, test_images)
        markdown = render_markdown(results, params)
        write_report(args.output, markdown, figures)
        mlflow.log_artifact(str(args.output / "report.md"), artifact_path="report")
        mlflow.log_artifacts(str(args.output / "figures"), artifact_path="report/figures")
    print(f"wrote {args.output / 'report.md'} with {len(figures)} figures")


if __name__ == "__main__":
    sys.exit(run_cli(main))
