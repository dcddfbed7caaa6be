"""Stage `report`: everything upstream → `reports/report.md` and its figures.

Every sentence that states a result is computed from this run's files or a committed study's;
the tutorial's numbers appear only where they are said to be the tutorial's.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import mlflow
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from pipeline import claims, cli, plots, studies, tracking
from pipeline.cifar import CIFAR10
from pipeline.escape import ESCAPE_THRESHOLD
from pipeline.files import atomic_path
from pipeline.params import Params, logged_params
from pipeline.results import RunResults, read_results
from pipeline.splits import load_split

# The tutorial's published validation numbers after 10 epochs (it validated on the test set).
TUTORIAL_EPOCH = 10
TUTORIAL = {
    "sigmoid": {"val_accuracy": 0.4672, "val_loss": 1.4827},
    "relu": {"val_accuracy": 0.6323, "val_loss": 1.1895},
}
TEMPLATE = "report.md.j2"


def _escapes(per_seed: Mapping[int, int | None]) -> str:
    return ", ".join("never" if e is None else str(e) for e in per_seed.values())


def step_interval(results: RunResults) -> int:
    """Training steps between two points of the step curve (one call into TensorFlow)."""
    steps = next(iter(results.steps.values()))["step"]
    return int(steps.iloc[1] - steps.iloc[0]) if len(steps) > 1 else 0


def step_images(results: RunResults) -> int:
    return next(iter(results.evaluation.training.values())).step_curve_images or 0


def plateau(results: RunResults) -> list[str]:
    """How long each activation sat at chance: by step within the first epochs, and by epoch."""
    lines = []
    for activation, training in results.evaluation.training.items():
        per_epoch = training.steps_per_epoch
        steps = training.escape_step_per_seed
        measured = int(results.seed_steps[activation]["step"].max())
        parts = []
        for seed, step in steps.items():
            if step is None:
                parts.append(f"seed {seed} had not left chance after {measured} steps")
            else:
                parts.append(
                    f"seed {seed} left it after {step} steps ({step / per_epoch:.2f} epochs)"
                )
        lines.append(
            f"**{activation}**: " + "; ".join(parts) + ". Escape epoch per seed (the first "
            f"whose validation accuracy exceeded {ESCAPE_THRESHOLD}): "
            f"{_escapes(training.escape_epoch_per_seed)}."
        )
    return lines


def results_table(results: RunResults) -> str:
    """Test scores (mean over seeds), last-epoch validation, and the tutorial's numbers."""
    rows = []
    ranked = sorted(results.evaluation.test.items(), key=lambda item: -item[1].accuracy.mean)
    for activation, test in ranked:
        last = results.histories[activation].iloc[-1]
        tutorial = TUTORIAL.get(activation)
        rows.append(
            {
                "activation": activation,
                "seeds": test.seeds,
                "test accuracy": test.accuracy.format(),
                "test loss": test.loss.format(),
                f"val accuracy (epoch {int(last['epoch'])})": f"{last['val_accuracy']:.4f}",
                f"tutorial val accuracy (epoch {TUTORIAL_EPOCH})": (
                    f"{tutorial['val_accuracy']:.4f}" if tutorial else "—"
                ),
                "top-class share of test predictions": f"{test.majority_share:.0%}",
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def claims_table(settled: Sequence[claims.Claim]) -> str:
    frame = pd.DataFrame(
        [
            {"#": i, "the tutorial says": c.claim, "verdict": c.verdict}
            for i, c in enumerate(settled, 1)
        ]
    )
    return frame.to_markdown(index=False, disable_numparse=True)


def layer_table(results: RunResults) -> str:
    """Per layer, sigmoid beside ReLU at initialisation and after epoch 1: the gradient, the
    activation's mean slope, and its mean output."""
    s, r = results.diagnostics["sigmoid"], results.diagnostics["relu"]
    labels = plots.layer_labels(s)
    rows = []
    for layer in claims.kernel_layers(s):
        row = {"layer": labels.get(layer, layer)}
        for epoch in (0, 1):
            column = f"grad_norm/{layer}/kernel"
            row[f"weight gradient, epoch {epoch}: sigmoid / ReLU"] = (
                f"{claims.at(s, column, epoch):.3g} / {claims.at(r, column, epoch):.3g}"
            )
        hidden = next((h for h in claims.hidden_layers(s) if h.removesuffix("_act") == layer), None)
        for epoch in (0, 1):
            row[f"mean slope, epoch {epoch}: sigmoid / ReLU"] = (
                f"{claims.at(s, f'mean_slope/{hidden}', epoch):.3f} / "
                f"{claims.at(r, f'mean_slope/{hidden}', epoch):.3f}"
                if hidden
                else "— (softmax)"
            )
        row["mean output, epoch 1: sigmoid / ReLU"] = (
            f"{claims.at(s, f'mean_activation/{hidden}', 1):.3f} / "
            f"{claims.at(r, f'mean_activation/{hidden}', 1):.3f}"
            if hidden
            else "—"
        )
        rows.append(row)
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def per_class_table(results: RunResults) -> str:
    """F1 per class for each activation's primary-seed model."""
    details = results.evaluation.details
    frame = pd.DataFrame(
        {"class": results.evaluation.class_names}
        | {f"{a} F1": [f"{v:.3f}" for v in d.f1] for a, d in details.items()}
    )
    return frame.to_markdown(index=False, disable_numparse=True)


def build_figures(
    results: RunResults,
    train_data: tuple[np.ndarray, np.ndarray],
    test_images: np.ndarray,
    primary_seed: int,
) -> dict[str, Figure]:
    activations = list(results.histories)
    return {
        "steps.png": plots.step_curve_figure(results.steps, results.seed_steps, ESCAPE_THRESHOLD),
        "curves.png": plots.curves_figure(results.histories, results.seed_histories),
        "seeds.png": plots.seed_strip_figure(
            {a: list(results.evaluation.details[a].accuracy_per_seed.values()) for a in activations}
        ),
        "gradients.png": plots.gradient_figure(results.diagnostics),
        "units.png": plots.units_figure(results.diagnostics),
        "activations.png": plots.activation_figure(),
        "samples.png": plots.sample_grid(*train_data, results.evaluation.class_names),
        "examples.png": plots.examples_figure(test_images, results.examples, activations),
        "confusion.png": plots.confusion_figure(
            {a: np.array(results.evaluation.details[a].confusion) for a in activations},
            results.evaluation.class_names,
            primary_seed,
        ),
    }


def shown_params(params: Params) -> tuple[dict, bool]:
    """The params as the report prints them, and whether the archive was a local copy: that copy
    by its file name alone, since where it lay on the machine that ran is no reader's path."""
    shown = params.model_dump(mode="json")
    url = urlsplit(params.data.url)
    local = url.scheme not in ("http", "https")
    if local:
        shown["data"]["url"] = Path(url.path).name
    return shown, local


def render_markdown(evidence: claims.Evidence, params: Params) -> str:
    """The report's text, from its template; figures are referenced relative to the report."""
    results = evidence.run
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline", "."),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    seeds = params.train.seeds
    settled = claims.settle(evidence)
    shown, local_archive = shown_params(params)
    return environment.get_template(TEMPLATE).render(
        validation_on_test=results.validation_source == "test",
        val_size=f"{params.data.val_size:,}",
        seeds=", ".join(map(str, seeds)),
        several_seeds=len(seeds) > 1,
        primary_seed=seeds[0],
        threshold=ESCAPE_THRESHOLD,
        step_images=f"{step_images(results):,}",
        step_interval=step_interval(results),
        plateau=plateau(results),
        results_table=results_table(results),
        paired=results.evaluation.paired.get("test_accuracy"),
        claims=settled,
        claims_table=claims_table(settled),
        reconcile=claims.reconcile(evidence),
        layer_table=layer_table(results),
        when_to_use=claims.when_to_use(evidence),
        n_examples=len(results.examples),
        per_class_table=per_class_table(results),
        params_yaml=yaml.safe_dump(shown, sort_keys=False),
        local_archive=local_archive,
        dataset=CIFAR10.title,
        chance=f"{CIFAR10.chance:.2f}",
    )


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
    parser = cli.stage_parser(
        __doc__, "data", "results", "output", "depth-study", "activation-study"
    )
    args, params = cli.parse_stage(parser, argv)
    activations = params.train.activations
    evidence = claims.Evidence(
        run=read_results(args.results, args.data, activations),
        cells=studies.read_cells(args.depth_study),
        activation_study=studies.read_scores(args.activation_study),
    )
    logged = logged_params(params, ("data", "model", "train", "evaluate"))
    with tracking.stage_run("report", params.mlflow.experiment, logged):
        train_data = load_split(args.data, "train")
        test_images, _ = load_split(args.data, "test")
        figures = build_figures(evidence.run, train_data, test_images, params.train.seeds[0])
        markdown = render_markdown(evidence, params)
        write_report(args.output, markdown, figures)
        report, folder = str(args.output / "report.md"), str(args.output / "figures")
        steps = [
            ("the report", lambda: mlflow.log_artifact(report, artifact_path="report")),
            ("its figures", lambda: mlflow.log_artifacts(folder, artifact_path="report/figures")),
        ]
        tracking.record("report", steps)
    print(f"wrote {args.output / 'report.md'} with {len(figures)} figures")


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
