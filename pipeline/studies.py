"""Committed studies read back for the report: no training, only the small files they keep.

A study folder under reports/studies/ holds either one run's `test_metrics.json` (the
seven-activation study) or one subfolder per cell, each with the `params.yaml` it ran with and
the `results/` its evaluate stage wrote (the depth × batch-normalisation study).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from pipeline.escape import format_escape
from pipeline.params import MAIN_ACTIVATIONS
from pipeline.results import Evaluation, Scores, read_evaluation


@dataclass(frozen=True)
class Cell:
    """One cell of a study: its network's depth and batch normalisation, and what it measured."""

    name: str
    depth: int  # conv blocks (= hidden dense layers in the depth study)
    batch_norm: bool
    evaluation: Evaluation
    histories: dict[str, pd.DataFrame]  # seed-mean curves per activation

    @property
    def seeds(self) -> int:
        return self.evaluation.test[MAIN_ACTIVATIONS[0]].seeds


def read_cells(folder: Path) -> list[Cell]:
    """Every cell of a study folder, shallowest and without batch normalisation first; [] when
    the folder is absent."""
    cells = []
    for params_file in sorted(folder.glob("*/params.yaml")):
        params = yaml.safe_load(params_file.read_text())
        results = params_file.parent / "results"
        activations = [*MAIN_ACTIVATIONS, *params["train"]["extra_activations"]]
        cells.append(
            Cell(
                name=params_file.parent.name,
                depth=params["model"]["conv_blocks"],
                batch_norm=params["model"]["batch_norm"],
                evaluation=read_evaluation(results, activations),
                histories={
                    a: pd.read_csv(results / "curves" / a / "history.csv") for a in activations
                },
            )
        )
    return sorted(cells, key=lambda c: (c.depth, c.batch_norm))


def read_scores(folder: Path) -> dict[str, Scores]:
    """A study's test scores per activation (its test_metrics.json); {} when absent."""
    path = folder / "test_metrics.json"
    if not path.is_file():
        return {}
    return {a: Scores.from_json(block) for a, block in json.loads(path.read_text()).items()}


def summary_table(cells: list[Cell]) -> str:
    """One row per cell and activation: test accuracy and loss over seeds, escape epochs."""
    rows = []
    for cell in cells:
        for activation, scores in cell.evaluation.test.items():
            escapes = cell.evaluation.training[activation].escape_epoch_per_seed
            rows.append(
                {
                    "depth": cell.depth,
                    "batch norm": "yes" if cell.batch_norm else "no",
                    "activation": activation,
                    "seeds": scores.seeds,
                    "test accuracy (mean ± std [95% CI])": scores.accuracy.format(),
                    "test loss": scores.loss.format(),
                    "escape epoch per seed": ", ".join(format_escape(e) for e in escapes.values()),
                }
            )
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def main(argv: list[str] | None = None) -> None:
    """Write a cell study's summary.md from its cells' committed results."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("study", type=Path)
    args = parser.parse_args(argv)
    cells = read_cells(args.study)
    text = (
        "# Summary\n\nWritten by `python -m pipeline.studies "
        f"{args.study.as_posix()}` from each cell's `results/`.\n\n{summary_table(cells)}\n"
    )
    (args.study / "summary.md").write_text(text)
    print(f"wrote {args.study / 'summary.md'} ({len(cells)} cells)")


if __name__ == "__main__":
    main()
