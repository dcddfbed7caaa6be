"""Committed studies read back for the report: no training, only the small files they keep.

A study folder under reports/studies/ holds one subfolder per cell, each with the `params.yaml` it
ran with and the `results/` its train and evaluate stages wrote (every seed's history, diagnostics
and step curve, and the test numbers per seed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.errors import PipelineError
from pipeline.escape import escape_epoch, escape_step, escape_threshold, format_escape
from pipeline.params import Params, parse_params
from pipeline.results import ScoresOnTestSet


@dataclass(frozen=True)
class Arm:
    """One activation in one cell of a study: every seed's curves and test numbers."""

    cell: str
    activation: str
    params: Params  # the cell's params.yaml, validated
    histories: dict[int, pd.DataFrame]  # per seed: epoch, loss, accuracy, val_loss, val_accuracy
    diagnostics: dict[int, pd.DataFrame]  # per seed: the probe from epoch 0 on
    steps: dict[int, pd.DataFrame]  # per seed: the step curve of the first steps
    summaries: dict[int, dict]  # per seed: train.json
    test: dict[int, dict[str, float]]  # per seed: the headline test numbers
    machine: dict | None = None  # the CPU it trained on (machine.json), where the cell kept it

    @property
    def seeds(self) -> list[int]:
        return sorted(self.histories)

    @property
    def steps_per_epoch(self) -> int:
        return next(iter(self.summaries.values()))["steps_per_epoch"]

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.params.train.epochs

    @property
    def threshold(self) -> float:
        """The validation accuracy that counts as having left chance, for this cell's classes."""
        return escape_threshold(self.params.data.n_classes)

    def stuck(self, epoch: int | None = None) -> dict[int, bool]:
        """Per seed: had not left chance by the end of `epoch` (0: initialisation, when no run
        has); by default, never in the whole run."""
        return {
            seed: left is None or (epoch is not None and left > epoch)
            for seed, left in self.escape_epochs().items()
        }

    def escape_epochs(self) -> dict[int, int | None]:
        """Per seed: the epoch it left chance in (None: never)."""
        return {
            seed: escape_epoch(history["val_accuracy"].tolist(), self.threshold)
            for seed, history in self.histories.items()
        }

    def steps_to_leave_chance(self) -> dict[int, float]:
        """Per seed: the escape step on the step curve; past its end, the escape epoch's last
        step; a seed that never left chance counts as the run's length (a censored value, so a
        difference with it is an underestimate)."""
        found = {}
        for seed, epoch in self.escape_epochs().items():
            step = escape_step(self.steps[seed], self.threshold)
            if step is None:
                step = self.total_steps if epoch is None else epoch * self.steps_per_epoch
            found[seed] = float(step)
        return found


# What each seed of a finished cell keeps (the train stage's small outputs).
SEED_FILES = ("history.csv", "diagnostics.csv", "steps.csv", "train.json")


def read_arms(cell: Path) -> dict[str, Arm]:
    """Every activation of one finished cell folder, by activation."""
    params = parse_params(yaml.safe_load((cell / "params.yaml").read_text()))
    results = cell / "results"
    scored = ScoresOnTestSet.read(results)
    machine = cell / "machine.json"
    arms = {}
    for activation in params.train.activations:
        folders = {s: results / "train" / activation / f"seed{s}" for s in params.train.seeds}
        for folder in folders.values():
            for name in SEED_FILES:
                if not (folder / name).is_file():
                    raise PipelineError(
                        f"the study cell {cell} is incomplete: {folder / name} is missing; "
                        "restore the cell from git or rerun it with tools/study.py"
                    )
        arms[activation] = Arm(
            cell=cell.name,
            activation=activation,
            params=params,
            histories={s: pd.read_csv(f / "history.csv") for s, f in folders.items()},
            diagnostics={s: pd.read_csv(f / "diagnostics.csv") for s, f in folders.items()},
            steps={s: pd.read_csv(f / "steps.csv") for s, f in folders.items()},
            summaries={s: json.loads((f / "train.json").read_text()) for s, f in folders.items()},
            test={int(s): n for s, n in scored.details[activation].per_seed.items()},
            machine=json.loads(machine.read_text()) if machine.is_file() else None,
        )
    return arms


def read_study(folder: Path) -> dict[str, dict[str, Arm]]:
    """cell → activation → Arm for every finished cell of a study (a folder holding params.yaml
    and results/); {} when the study is absent."""
    return {
        params_file.parent.name: read_arms(params_file.parent)
        for params_file in sorted(folder.glob("*/params.yaml"))
        if (params_file.parent / "results" / "evaluation.json").is_file()
    }


def summary_table(study: dict[str, dict[str, Arm]]) -> str:
    """One row per cell and activation: seeds, test accuracy and how the seeds left chance."""
    rows = []
    for cell, arms in study.items():
        for activation, arm in arms.items():
            accuracy = [n["test_accuracy"] for n in arm.test.values()]
            steps = arm.steps_to_leave_chance()
            stuck = arm.stuck()
            rows.append(
                {
                    "cell": cell,
                    "activation": activation,
                    "seeds": len(arm.seeds),
                    "test accuracy, median [lowest, highest]": (
                        f"{np.median(accuracy):.4f} [{min(accuracy):.4f}, {max(accuracy):.4f}]"
                    ),
                    "seeds that never left chance": sum(stuck.values()),
                    "steps to leave chance per seed": ", ".join(
                        format_escape(None if stuck[s] else int(steps[s])) for s in arm.seeds
                    ),
                }
            )
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def budget_table(folder: Path, study: dict[str, dict[str, Arm]]) -> str:
    """Per cell: its wall time (tools/study.py's wall_seconds.json) and each model's training time
    (train.json), the compute the study spent."""
    rows = []
    for cell, arms in study.items():
        wall, machine = folder / cell / "wall_seconds.json", folder / cell / "machine.json"
        seconds = [s["train_seconds"] for arm in arms.values() for s in arm.summaries.values()]
        rows.append(
            {
                "cell": cell,
                "models": len(seconds),
                "training time per model, median [range]": (
                    f"{np.median(seconds):.0f} s [{min(seconds):.0f}, {max(seconds):.0f}]"
                ),
                "wall time of the cell": (
                    f"{json.loads(wall.read_text())['wall_seconds'] / 60:.0f} min"
                    if wall.is_file()
                    else "—"
                ),
                # The CPU's rounding moves a seed's trajectory: cells compared seed by seed
                # should share one. tools/study.py records it since the init cells.
                "CPU": (
                    "{cpu}, {vector_extensions}".format(**json.loads(machine.read_text()))
                    if machine.is_file()
                    else "not recorded (the study's README)"
                ),
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def main(argv: list[str] | None = None) -> None:
    """Write a cell study's summary.md from its cells' committed results."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("study", type=Path)
    args = parser.parse_args(argv)
    cells = read_study(args.study)
    text = (
        "# Summary\n\nWritten by `python -m pipeline.studies "
        f"{args.study.as_posix()}` from each cell's `results/`.\n\n{summary_table(cells)}\n\n"
        "## Compute spent\n\nA model a cell shares with an earlier one came from DVC's run-cache "
        "and is counted in both; the wall time is what the cell took.\n\n"
        f"{budget_table(args.study, cells)}\n"
    )
    (args.study / "summary.md").write_text(text)
    print(f"wrote {args.study / 'summary.md'} ({len(cells)} cells)")


if __name__ == "__main__":
    main()
