"""The class's pooled report: every student's runs read back from the server, the poolable ones
summed up over seeds, written with the report stage's template set-up and figure writing.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import plots, report
from pipeline.claims import ACCURACY
from pipeline.classroom_accounts import (
    NOT_POOLED_TAG,
    refused,
    run_user,
    server,
    training_runs,
)
from pipeline.decide import Comparison, paired, seeds_split, split_outcome
from pipeline.errors import PipelineError
from pipeline.escape import ESCAPE_THRESHOLD, escape_epoch, format_escape
from pipeline.files import atomic_path
from pipeline.params import MAIN_ACTIVATIONS, TRAIN_KEYS, Params, load_params, logged_params

TEMPLATE = "classroom.md.j2"


@dataclass
class ClassRun:
    """One student's training run, as read back from the server."""

    account: str
    run_name: str
    activation: str
    seed: int | None
    status: str
    params: dict[str, str]
    val_accuracy: list[float]  # per epoch, epoch 1 first
    test_accuracy: float | None
    logged_by: str  # the account the run says it was logged by (run_user)
    not_pooled: str | None = None  # why the teacher's command set it apart (NOT_POOLED_TAG)

    @property
    def escape_epoch(self) -> int | None:
        return escape_epoch(self.val_accuracy)


@dataclass
class Pooled:
    pooled: list[ClassRun]
    apart: list[tuple[ClassRun, str]]  # (run, why it was not pooled)
    students: list[str] = field(default_factory=list)


def _differences(run: ClassRun, reference: Mapping[str, str]) -> list[str]:
    return [
        f"{key} {run.params.get(key, 'missing')} (class: {value})"
        for key, value in reference.items()
        if run.params.get(key) != value
    ]


def pool(runs: Sequence[ClassRun], reference: Mapping[str, str]) -> Pooled:
    """Finished, evaluated runs of the class's params (and of the data most runs used), logged
    by the experiment's own student, are pooled; every other run is listed apart with the
    reason."""
    apart, candidates = [], []
    for run in runs:
        if run.not_pooled:
            apart.append((run, run.not_pooled))
        elif run.logged_by != run.account:
            apart.append((run, f"logged by {run.logged_by}, not {run.account}"))
        elif run.status != "FINISHED":
            apart.append((run, run.status.lower()))
        elif differences := _differences(run, reference):
            apart.append((run, "other params: " + ", ".join(differences)))
        elif run.test_accuracy is None:
            apart.append((run, "not evaluated (its evaluate stage did not finish)"))
        else:
            candidates.append(run)
    data = Counter((r.params.get("train_images"), r.params.get("val_images")) for r in candidates)
    usual = data.most_common(1)[0][0] if data else None
    pooled = []
    for run in candidates:
        seen = (run.params.get("train_images"), run.params.get("val_images"))
        if seen == usual:
            pooled.append(run)
        else:
            apart.append(
                (
                    run,
                    f"other data: {seen[0]} training / {seen[1]} validation images "
                    f"(most runs: {usual[0]} / {usual[1]})",
                )
            )
    students = sorted({r.account for r in pooled})
    return Pooled(pooled, apart, students)


def escape_counts(runs: Sequence[ClassRun], epochs: int) -> dict[str, int]:
    """How many runs left chance in each epoch, and how many never did."""
    counts = {str(e): 0 for e in range(1, epochs + 1)} | {"never": 0}
    for run in runs:
        counts[format_escape(run.escape_epoch)] += 1
    return counts


def paired_by_seed(runs: Sequence[ClassRun]) -> Comparison | None:
    """ReLU − sigmoid test accuracy over the seeds (one a student) that have both, by the
    report's decision rule; None if no seed has both."""
    by_seed: dict[int, dict[str, ClassRun]] = {}
    for run in runs:
        if run.seed is not None:
            by_seed.setdefault(run.seed, {})[run.activation] = run
    pairs = {s: v for s, v in by_seed.items() if set(MAIN_ACTIVATIONS) <= set(v)}
    if not pairs:
        return None
    arms = {a: {s: v[a] for s, v in pairs.items()} for a in MAIN_ACTIVATIONS}
    # A mean over seeds where some runs never left chance describes no run: count instead.
    split = seeds_split(
        *({s: r.escape_epoch is None for s, r in arm.items()} for arm in arms.values())
    )
    accuracy = {a: {s: r.test_accuracy for s, r in arm.items()} for a, arm in arms.items()}
    return paired("ReLU − sigmoid", ACCURACY, accuracy["relu"], accuracy["sigmoid"], split)


def read_class_runs(uri: str, params: Params) -> list[ClassRun]:
    """Every training run (not deleted) in the class's student experiments (`training_runs`)."""
    runs = []
    for account, run, curve in training_runs(uri, params):
        seed = run.data.tags.get("seed")
        runs.append(
            ClassRun(
                account=account,
                run_name=run.info.run_name,
                activation=run.data.tags.get("activation", "?"),
                seed=int(seed) if seed and seed.isdigit() else None,
                status=run.info.status,
                params=dict(run.data.params),
                val_accuracy=curve,
                test_accuracy=run.data.metrics.get("test_accuracy"),
                logged_by=run_user(run),
                not_pooled=run.data.tags.get(NOT_POOLED_TAG),
            )
        )
    return sorted(runs, key=lambda r: (r.account, r.activation, r.seed or 0, r.run_name))


def _four(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def activation_order(runs: Sequence[ClassRun]) -> list[str]:
    """Sigmoid and ReLU first (the colours every report gives them), then the others by name."""
    found = {r.activation for r in runs}
    return [a for a in MAIN_ACTIVATIONS if a in found] + sorted(found - set(MAIN_ACTIVATIONS))


def report_tables(result: Pooled, epochs: int) -> dict[str, Any]:
    """What the template shows, as markdown tables and numbers."""
    activations = activation_order(result.pooled)
    by_activation = {a: [r for r in result.pooled if r.activation == a] for a in activations}
    counts = {a: escape_counts(runs, epochs) for a, runs in by_activation.items()}
    summary_rows = [
        {
            "activation": activation,
            "runs": len(runs),
            "test accuracy": split_outcome(
                {i: r.test_accuracy for i, r in enumerate(runs)},
                {i: r.escape_epoch is None for i, r in enumerate(runs)},
                lambda v: f"{v:.4f}",
            ),
            "never left chance": counts[activation]["never"],
        }
        for activation, runs in by_activation.items()
    ]
    escape_rows = [
        {"escape epoch": epoch, **{a: counts[a][epoch] for a in activations}}
        for epoch in escape_counts([], epochs)
    ]
    lines = [
        {
            "account": r.account,
            "seed": r.seed,
            "activation": r.activation,
            "test accuracy": _four(r.test_accuracy),
            "escape epoch": format_escape(r.escape_epoch),
        }
        for r in result.pooled
    ]
    apart = [
        {"account": r.account, "run": r.run_name, "status": r.status, "why not pooled": why}
        for r, why in result.apart
    ]

    def table(rows: list[dict]) -> str:
        return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else ""

    return {
        "summary": table(summary_rows),
        "escapes": table(escape_rows),
        "lines": table(lines),
        "apart": table(apart),
        "by_activation": by_activation,
        "escape_counts": counts,
    }


def report_main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    uri = server()
    try:
        runs = read_class_runs(uri, params)
    except Exception as exc:
        raise refused(uri, exc) from None
    reference = {k: str(v) for k, v in logged_params(params, TRAIN_KEYS).items()}
    result = pool(runs, reference)
    if not result.pooled:
        raise PipelineError(
            f"no finished, evaluated run of the class's params on {uri} yet; "
            f"{len(runs)} run(s) found, none poolable"
        )
    tables = report_tables(result, params.train.epochs)
    markdown = report.render(
        TEMPLATE,
        tables=tables,
        students=result.students,
        runs=len(result.pooled),
        paired=paired_by_seed(result.pooled),
        epochs=params.train.epochs,
        experiment=params.mlflow.experiment,
        threshold=f"{ESCAPE_THRESHOLD:.2f}",
    )
    by_activation = tables["by_activation"]
    figures = {
        "curves.png": plots.every_curve_figure(
            {a: [r.val_accuracy for r in runs] for a, runs in by_activation.items()},
            ESCAPE_THRESHOLD,
        ),
        "escape.png": plots.escape_count_figure(tables["escape_counts"]),
        "accuracy.png": plots.seed_strip_figure(
            {a: [r.test_accuracy for r in rs] for a, rs in tables["by_activation"].items()}
        ),
    }
    with atomic_path(Path(args.output)) as tmp:  # the whole folder is the pooled report's
        tmp.mkdir()
        report.write_report(tmp, markdown, figures)
    print(
        f"pooled {len(result.pooled)} run(s) of {len(result.students)} student(s) into "
        f"{args.output}/report.md; {len(result.apart)} run(s) listed apart"
    )
