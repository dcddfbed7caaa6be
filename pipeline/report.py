"""Stage `report`: everything upstream → `reports/report.md` and its figures.

Every sentence that states a result is computed from this run's files or a committed study's;
the tutorial's numbers appear only where they are said to be the tutorial's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from pipeline import advice, claims, cli, mechanism, outage, plots, studies, tracking
from pipeline import probe_columns as columns
from pipeline.cifar import CIFAR10
from pipeline.decide import MIN_SEEDS, VERDICTS
from pipeline.escape import ESCAPE_THRESHOLD, escape_step, escape_threshold, format_escape
from pipeline.files import atomic_path
from pipeline.params import STAGE_PARAMS, Params, logged_params
from pipeline.results import RunResults, read_results
from pipeline.splits import load_split

# The tutorial's published validation numbers after 10 epochs (it validated on the test set).
TUTORIAL_EPOCH = 10
TUTORIAL = {
    "sigmoid": {"val_accuracy": 0.4672, "val_loss": 1.4827},
    "relu": {"val_accuracy": 0.6323, "val_loss": 1.1895},
}
TEMPLATE = "report.md.j2"
TIMING = "activation-cost.json"  # claim 6's timing experiment, in the study's folder
PRESPECIFIED = "prespecified.json"  # verdicts by the analysis fixed before the study's results


def _escapes(per_seed: Mapping[int, int | None]) -> str:
    return ", ".join(format_escape(e) for e in per_seed.values())


class Evidence:
    """What the report is made from: this run, and the claims study committed beside it."""

    def __init__(
        self,
        run: RunResults,
        study: claims.Study,
        timing: Mapping | None,
        prespecified: Mapping | None = None,
    ) -> None:
        self.run, self.study, self.timing = run, study, timing
        self.prespecified = prespecified
        self.claims = claims.judge_tutorial_claims(study, timing)
        self.further = claims.further(study)

    @property
    def settled(self) -> list[claims.Claim]:
        """The tutorial's claims, then the further questions."""
        return [*self.claims, *self.further]

    @property
    def by_key(self) -> dict[str, claims.Claim]:
        return {c.key: c for c in self.settled}


def read_study_file(study: Path, name: str) -> dict | None:
    """A JSON file the study keeps beside its cells (TIMING, PRESPECIFIED); None when absent."""
    path = study / name
    return json.loads(path.read_text()) if path.is_file() else None


def study_setting(study: claims.Study) -> str | None:
    """The claims study's own setting, in words, from its baseline cell's params."""
    arms = study.get(claims.BASELINE) or next(iter(study.values()), None)
    if not arms:
        return None
    arm = next(iter(arms.values()))
    p = arm.params
    images = f"{p.data.train_limit or CIFAR10.train_images - p.data.val_size:,}"
    seeds = p.train.seeds
    return (
        f"{images} training images ({arm.steps_per_epoch} steps an epoch), {p.train.epochs} "
        f"epochs ({arm.total_steps:,} steps), {p.data.val_size:,} held-out validation images, "
        f"the 10,000 test images, seeds {seeds[0]}–{seeds[-1]} ({len(seeds)} per arm)"
    )


def step_interval(results: RunResults) -> int:
    """Training steps between two points of the step curve (one call into TensorFlow)."""
    steps = next(iter(results.steps.values()))["step"]
    return int(steps.iloc[1] - steps.iloc[0]) if len(steps) > 1 else 0


def step_images(results: RunResults) -> int:
    return next(iter(results.evaluation.training.values())).step_curve_images or 0


def chance(results: RunResults) -> float:
    """Accuracy of guessing among the classes this run kept (data.classes): 1 / classes."""
    return 1 / len(results.evaluation.class_names)


def threshold(results: RunResults) -> float:
    """The validation accuracy that counts as having left chance in this run."""
    return escape_threshold(len(results.evaluation.class_names))


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
            f"whose validation accuracy exceeded {threshold(results):.3g}): "
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


def events(results: RunResults) -> list[str]:
    """Per activation, the order of events through the plateau, from the seed-mean step curve."""
    found = []
    for activation in ("sigmoid", "relu"):
        escape = escape_step(results.steps[activation], threshold(results))
        labels = columns.layer_labels(results.diagnostics[activation])
        seeds = results.seed_steps[activation]["seed"].unique()
        curve = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean of {len(seeds)} seeds"
        line = mechanism.order_of_events(
            results.steps[activation], escape, activation, labels, curve
        )
        if line:
            found.append(line)
    return found


def claims_table(settled: Sequence[claims.Claim]) -> str:
    frame = pd.DataFrame(
        [
            {
                "#": c.key,
                "the claim": c.claim,
                "tested by": c.arms,
                "verdict": c.verdict_by_part
                + (
                    f", for the part tested; '{c.untested}' is not judged"
                    if c.untested and not c.missing
                    else ""
                ),
            }
            for c in settled
        ]
    )
    return frame.to_markdown(index=False, disable_numparse=True)


def study_columns(study: claims.Study) -> tuple[dict, dict]:
    """Per arm (cell: activation), every seed's test accuracy and whether it stayed at chance."""
    values, stuck = {}, {}
    for cell, arms in study.items():
        for activation, arm in arms.items():
            label = f"{cell}: {claims.name(activation)}"
            if cell in (claims.CENTRING, claims.SPARSITY) and activation in ("sigmoid", "relu"):
                continue  # the baseline's own models, restored from the cache: shown once
            if arm.params.data.n_classes != CIFAR10.n_classes:
                continue  # another task (claim 9's two classes), whose chance is not this axis's
            values[label] = claims.test_accuracy(arm)
            stuck[label] = arm.stuck()
    return values, stuck


def layer_table(results: RunResults) -> str:
    """Per layer, sigmoid beside ReLU at initialisation and after epoch 1: the gradient, the
    activation's mean slope, and its mean output."""
    s, r = results.diagnostics["sigmoid"], results.diagnostics["relu"]
    labels = columns.layer_labels(s)
    rows = []
    for layer in columns.kernel_layers(s):
        row = {"layer": labels.get(layer, layer)}
        for epoch in (0, 1):
            column = columns.kernel(layer)
            row[f"weight gradient, epoch {epoch}: sigmoid / ReLU"] = (
                f"{mechanism.value_at_epoch(s, column, epoch):.3g} / {mechanism.value_at_epoch(r, column, epoch):.3g}"
            )
        hidden = next(
            (h for h in columns.hidden_layers(s) if h.removesuffix("_act") == layer), None
        )
        for epoch in (0, 1):
            row[f"mean slope, epoch {epoch}: sigmoid / ReLU"] = (
                f"{mechanism.value_at_epoch(s, columns.column(columns.MEAN_SLOPE, hidden), epoch):.3g} / "
                f"{mechanism.value_at_epoch(r, columns.column(columns.MEAN_SLOPE, hidden), epoch):.3g}"
                if hidden
                else "— (softmax)"
            )
        row["mean output, epoch 1: sigmoid / ReLU"] = (
            f"{mechanism.value_at_epoch(s, columns.column(columns.MEAN_OUTPUT, hidden), 1):.3f} / "
            f"{mechanism.value_at_epoch(r, columns.column(columns.MEAN_OUTPUT, hidden), 1):.3f}"
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
    evidence: Evidence,
    train_data: tuple[np.ndarray, np.ndarray],
    test_images: np.ndarray,
    primary_seed: int,
) -> dict[str, Figure]:
    results = evidence.run
    activations = list(results.histories)
    figures = {
        "steps.png": plots.step_curve_figure(
            results.steps, results.seed_steps, threshold(results), chance(results)
        ),
        "plateau.png": plots.plateau_figure(
            {a: results.steps[a] for a in ("sigmoid", "relu")},
            columns.layer_labels(results.diagnostics["sigmoid"]),
            threshold(results),
        ),
        "curves.png": plots.curves_figure(
            results.histories, results.seed_histories, chance(results)
        ),
        "seeds.png": plots.seed_strip_figure(
            {
                a: list(results.evaluation.details[a].accuracy_per_seed.values())
                for a in activations
            },
            chance(results),
        ),
        "gradients.png": plots.gradient_ratio_figure(results.diagnostics),
        "units.png": plots.units_figure(results.diagnostics, chance(results)),
        "activations.png": plots.activation_figure(),
        "samples.png": plots.sample_grid(*train_data, results.evaluation.class_names),
        "examples.png": plots.examples_figure(test_images, results.examples, activations),
        "confusion.png": plots.confusion_figure(
            {a: np.array(results.evaluation.details[a].confusion) for a in activations},
            results.evaluation.class_names,
            primary_seed,
        ),
    }
    if evidence.study:
        figures["study.png"] = plots.study_seeds_figure(*study_columns(evidence.study))
    return figures


def shown_params(params: Params) -> tuple[dict, bool]:
    """The params as the report prints them, and whether the archive was a local copy: that copy
    by its file name alone, since where it lay on the machine that ran is no reader's path."""
    shown = params.model_dump(mode="json")
    url = urlsplit(params.data.url)
    local = url.scheme not in ("http", "https")
    if local:
        shown["data"]["url"] = Path(url.path).name
    return shown, local


def render(template: str, **context: Any) -> str:
    """One of the package's templates, filled in: a name it uses and is not given is an error."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline", "."),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template(template).render(**context)


def render_markdown(evidence: Evidence, params: Params) -> str:
    """The report's text, from its template; figures are referenced relative to the report."""
    results = evidence.run
    seeds = params.train.seeds
    shown, local_archive = shown_params(params)
    return render(
        TEMPLATE,
        validation_on_test=results.validation_source == "test",
        val_size=f"{params.data.val_size:,}",
        seeds=", ".join(map(str, seeds)),
        several_seeds=len(seeds) > 1,
        primary_seed=seeds[0],
        threshold=f"{threshold(results):.3g}",
        step_images=f"{step_images(results):,}",
        step_interval=step_interval(results),
        plateau=plateau(results),
        results_table=results_table(results),
        paired=results.evaluation.paired.get("test_accuracy"),
        study_setting=study_setting(evidence.study),
        has_study=bool(evidence.study),
        verdicts=VERDICTS,
        min_seeds=MIN_SEEDS,
        claims=evidence.claims,
        study_threshold=f"{ESCAPE_THRESHOLD:.2f}",
        two_class_threshold=f"{escape_threshold(2):.3f}",
        claims_table=claims_table(evidence.claims),
        further=evidence.further,
        further_table=claims_table(evidence.further),
        held_together=claims.held_together(evidence.settled),
        before_the_results=claims.before_the_results(evidence.prespecified, evidence.settled),
        reconcile=mechanism.reconcile(results.diagnostics["sigmoid"], results.diagnostics["relu"]),
        events=events(results),
        adam_note=mechanism.adam_note(
            mechanism.collapsed_before_escape(
                results.steps["sigmoid"], escape_step(results.steps["sigmoid"], threshold(results))
            )
        ),
        layer_table=layer_table(results),
        when_to_use=advice.when_to_use(evidence.by_key, evidence.study),
        n_examples=len(results.examples),
        per_class_table=per_class_table(results),
        params_yaml=yaml.safe_dump(shown, sort_keys=False),
        local_archive=local_archive,
        dataset=CIFAR10.title,
        chance=f"{chance(results):.2f}",
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
    parser = cli.stage_parser(__doc__, "data", "results", "output", "study")
    args, params = cli.parse_stage(parser, argv)
    activations = params.train.activations
    evidence = Evidence(
        read_results(args.results, args.data, activations),
        studies.read_study(args.study),
        read_study_file(args.study, TIMING),
        read_study_file(args.study, PRESPECIFIED),
    )
    logged = logged_params(params, STAGE_PARAMS["report"])
    with tracking.stage_run("report", params.mlflow.experiment, logged):
        train_data = load_split(args.data, "train")
        test_images, _ = load_split(args.data, "test")
        figures = build_figures(evidence, train_data, test_images, params.train.seeds[0])
        markdown = render_markdown(evidence, params)
        write_report(args.output, markdown, figures)
        report, folder = str(args.output / "report.md"), str(args.output / "figures")
        steps = [
            ("the report", lambda: tracking.log_artifact(report, artifact_path="report")),
            ("its figures", lambda: tracking.log_artifacts(folder, artifact_path="report/figures")),
        ]
        outage.run_logging_steps("report", steps)
    print(f"wrote {args.output / 'report.md'} with {len(figures)} figures")


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
