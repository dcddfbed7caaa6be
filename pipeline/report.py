"""Stage `report`: everything upstream → `reports/report.md` and its figures.

Every sentence that states a result is computed from this run's files; the tutorial's numbers
appear only in the column that says they are the tutorial's.
"""

from __future__ import annotations

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

from pipeline import cli, plots, tracking
from pipeline.errors import PipelineError
from pipeline.files import atomic_path
from pipeline.metrics import ESCAPE_THRESHOLD
from pipeline.params import MAIN_ACTIVATIONS, Params, logged_params
from pipeline.preprocess import load_split
from pipeline.results import Evaluation, Training, read_evaluation

# The tutorial's published validation numbers after 10 epochs (it validated on the test set).
TUTORIAL_EPOCH = 10
TUTORIAL = {
    "sigmoid": {"val_accuracy": 0.4672, "val_loss": 1.4827},
    "relu": {"val_accuracy": 0.6323, "val_loss": 1.1895},
}


@dataclasses.dataclass(frozen=True)
class RunResults:
    # Per activation: the seed-mean epoch, loss, accuracy, val_loss, val_accuracy.
    histories: dict[str, pd.DataFrame]
    # Per activation: the probe's seed-mean gradient norms and unit statistics, from epoch 0 on.
    diagnostics: dict[str, pd.DataFrame]
    # Per activation: every seed's history (a `seed` column); one seed = the history above.
    seed_histories: dict[str, pd.DataFrame]
    evaluation: Evaluation  # test scores, training summaries, per-class details, paired gaps
    examples: pd.DataFrame  # fixed test images with each model's prediction
    validation_source: str  # "train" (held-out split) or "test" (the tutorial's way)


def read_results(results: Path, data: Path, activations: Sequence[str]) -> RunResults:
    """Load what the train and evaluate stages wrote."""
    try:
        curves = results / "curves"
        histories = {a: pd.read_csv(curves / a / "history.csv") for a in activations}
        diagnostics = {a: pd.read_csv(curves / a / "diagnostics.csv") for a in activations}
        seed_histories = {a: pd.read_csv(curves / a / "history_seeds.csv") for a in activations}
        meta = json.loads((data / "meta.json").read_text())
        return RunResults(
            histories=histories,
            diagnostics=diagnostics,
            seed_histories=seed_histories,
            evaluation=read_evaluation(results, activations),
            examples=pd.read_csv(results / "examples.csv"),
            validation_source=meta["validation_source"],
        )
    except FileNotFoundError as exc:
        raise PipelineError(f"{exc.filename} not found; run `dvc repro` to produce it") from None


def _escapes(training: Training) -> str:
    """'1' for one seed; '2, 1, never' for several."""
    return ", ".join(
        "never" if e is None else str(e) for e in training.escape_epoch_per_seed.values()
    )


def findings(results: RunResults) -> list[str]:
    """The contrasts that matter, each with its number: sigmoid against ReLU, then the rest."""
    test = results.evaluation.test
    lines = []
    if set(MAIN_ACTIVATIONS) <= test.keys():
        relu, sigmoid = test["relu"].accuracy.mean, test["sigmoid"].accuracy.mean
        better = "ReLU" if relu > sigmoid else "sigmoid"
        lines.append(
            f"On the test set, ReLU reached accuracy {relu:.4f} and sigmoid {sigmoid:.4f}: "
            f"{better} is ahead by {abs(relu - sigmoid) * 100:.1f} points."
        )
        paired = results.evaluation.paired.get("test_accuracy")
        if paired and paired.n > 1:
            lines.append(
                f"Paired by seed over {paired.n} seeds (same initial draw for both), ReLU − "
                f"sigmoid test accuracy is {paired.difference.format(signed=True)} "
                "(mean ± std [95% CI])."
            )
    others = [a for a in test if a not in MAIN_ACTIVATIONS]
    if others:
        ranked = sorted(others, key=lambda a: -test[a].accuracy.mean)
        best, worst = ranked[0], ranked[-1]
        text = f"Of the other activations, {best} scored highest ({test[best].accuracy.mean:.4f})"
        if worst != best:
            text += f" and {worst} lowest ({test[worst].accuracy.mean:.4f})"
        lines.append(text + ".")
    for activation, scores in test.items():
        if scores.majority_share > 0.5:
            lines.append(
                f"{activation}: {scores.majority_share:.0%} of its test predictions fall on one "
                "class, the mark of a model still at chance."
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


# Diagnostics columns that count units in a state, and how the table names that state.
UNIT_STATES = {"saturated_fraction/": "saturated", "dead_fraction/": "dead"}
FIRST_KERNEL = "grad_norm/conv2d/kernel"


def peak_unit_state(frame: pd.DataFrame) -> str:
    """'72.3% saturated (conv2d, epoch 0)': the highest saturated or dead share in any layer."""
    peaks = []
    for prefix, state in UNIT_STATES.items():
        for column in [c for c in frame.columns if c.startswith(prefix)]:
            row = frame.loc[frame[column].idxmax()]
            layer = column.removeprefix(prefix)
            peaks.append((row[column], f"{state} ({layer}, epoch {int(row['epoch'])})"))
    if not peaks:
        return "—"
    share, where = max(peaks, key=lambda peak: peak[0])
    return f"{share:.1%} {where}"


def _after_epoch_one(frame: pd.DataFrame) -> float:
    return float(frame.loc[frame["epoch"] == 1, "plateau_share"].iloc[0])


def evidence_table(results: RunResults) -> str:
    """Per activation, what the probe measured during training and when it left chance."""
    rows = [
        "| activation | escape epoch per seed | best epoch (mean curve) | first-layer gradient "
        "at epoch 0 | peak saturated or dead share | top-class share after epoch 1 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for activation, frame in results.diagnostics.items():
        training = results.evaluation.training[activation]
        rows.append(
            f"| {activation} | {_escapes(training)} | {training.best_epoch} | "
            f"{frame[FIRST_KERNEL].iloc[0]:.3g} | {peak_unit_state(frame)} | "
            f"{_after_epoch_one(frame):.0%} |"
        )
    return "\n".join(rows)


def evidence(results: RunResults) -> list[str]:
    """Why they differ, as measured on the probe batch: sigmoid against ReLU, then the rest."""
    diags, training = results.diagnostics, results.evaluation.training
    lines = []
    if set(MAIN_ACTIVATIONS) <= diags.keys():
        sigmoid, relu = diags["sigmoid"], diags["relu"]
        lines.append(
            _ratio_sentence(
                "At initialisation (epoch 0), the loss gradient of the first layer's kernel",
                "sigmoid",
                sigmoid[FIRST_KERNEL].iloc[0],
                "ReLU",
                relu[FIRST_KERNEL].iloc[0],
            )
        )
        lines.append(
            f"After epoch 1 the most-predicted class took {_after_epoch_one(sigmoid):.0%} of "
            f"sigmoid's validation predictions and {_after_epoch_one(relu):.0%} of ReLU's "
            f"(10% = balanced). Escape epochs (first validation accuracy above "
            f"{ESCAPE_THRESHOLD:.2f}), by seed: sigmoid {_escapes(training['sigmoid'])}; ReLU "
            f"{_escapes(training['relu'])}."
        )
    others = [a for a in diags if a not in MAIN_ACTIVATIONS]
    if others:
        late = [
            a
            for a in others
            if any(e is None or e > 1 for e in training[a].escape_epoch_per_seed.values())
        ]
        if late:
            lines.append(
                "Of the other activations, "
                + ", ".join(f"{a} (escape epochs {_escapes(training[a])})" for a in late)
                + " needed more than one epoch to leave chance in some seed."
            )
        else:
            lines.append("Every other activation left chance after its first epoch in every seed.")
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
        test = results.evaluation.test[activation]
        tutorial = TUTORIAL[activation]
        rows.append(
            f"| {activation} | {int(last['epoch'])} | {last['val_accuracy']:.4f} | "
            f"{last['val_loss']:.4f} | {test.accuracy.format()} | {test.loss.format()} | "
            f"{tutorial['val_accuracy']:.4f} | {tutorial['val_loss']:.4f} |"
        )
    return "\n".join(rows)


def ranking_table(results: RunResults) -> str:
    """Every activation trained, best mean test accuracy first."""
    rows = [
        "| rank | activation | seeds | test accuracy (mean ± std [95% CI]) | test loss | "
        "top-class share of test predictions |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    ranked = sorted(results.evaluation.test.items(), key=lambda item: -item[1].accuracy.mean)
    for rank, (activation, test) in enumerate(ranked, start=1):
        rows.append(
            f"| {rank} | {activation} | {test.seeds} | {test.accuracy.format()} | "
            f"{test.loss.format()} | {test.majority_share:.0%} |"
        )
    return "\n".join(rows)


def per_class_table(results: RunResults) -> str:
    """F1 per class for each model."""
    details = results.evaluation.details
    activations = list(details)
    rows = [
        "| class | " + " | ".join(f"{a} F1" for a in activations) + " |",
        "| --- |" + " --- |" * len(activations),
    ]
    for i, name in enumerate(results.evaluation.class_names):
        rows.append(
            f"| {name} | " + " | ".join(f"{details[a].f1[i]:.3f}" for a in activations) + " |"
        )
    return "\n".join(rows)


def build_figures(
    results: RunResults, train_data: tuple[np.ndarray, np.ndarray], test_images: np.ndarray
) -> dict[str, Figure]:
    activations = list(results.histories)
    return {
        "activations.png": plots.activation_figure(),
        "samples.png": plots.sample_grid(*train_data, results.evaluation.class_names),
        "curves.png": plots.curves_figure(results.histories, results.seed_histories),
        "examples.png": plots.examples_figure(test_images, results.examples, activations),
        "gradients.png": plots.gradient_figure(results.diagnostics),
        "units.png": plots.units_figure(results.diagnostics),
        "confusion.png": plots.confusion_figure(
            {a: np.array(results.evaluation.details[a].confusion) for a in activations},
            results.evaluation.class_names,
        ),
        "seeds.png": plots.seed_strip_figure(
            {a: list(results.evaluation.details[a].accuracy_per_seed.values()) for a in activations}
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
        "Mean over seeds; ± is the standard deviation across seeds, brackets the 95% t-interval "
        "of the mean (shown when there is more than one seed).",
        ranking_table(results),
        "![Test accuracy of every seed](figures/seeds.png)",
        "## This run beside the tutorial",
        f"Validation here is {validation}. The tutorial's columns are its published numbers.",
        comparison_table(results),
        "## Why: gradients, saturation, dead units",
        "Measured during training on a fixed probe batch of training images (the same every "
        "epoch), at initialisation and after every epoch; an escape epoch is the first whose "
        f"validation accuracy exceeds {ESCAPE_THRESHOLD:.2f} (chance is 0.10).",
        evidence_table(results),
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
    args, params = cli.parse_stage(cli.stage_parser(__doc__, "data", "results", "output"), argv)
    activations = params.train.activations
    results = read_results(args.results, args.data, activations)
    logged = logged_params(params, ("data", "model", "train", "evaluate"))
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
    sys.exit(cli.run_cli(main))
