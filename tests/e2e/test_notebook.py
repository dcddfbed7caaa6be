"""notebooks/explore_runs.ipynb executed end to end in a kernel of this environment, on the
store of the session's finished tiny project: once as it is (a student's own store, no class)
and once made into a class of two students."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import nbformat
import pandas as pd
import pytest
from ipykernel.kernelspec import write_kernel_spec
from nbclient import NotebookClient
from project import PROJECT, copy_repo

from pipeline.classroom_accounts import SEED_TAG, STUDENT_TAG

NOTEBOOK = PROJECT / "notebooks" / "explore_runs.ipynb"
# Appended to the notebook: what it found, as JSON on stdout.
PROBE = """import json
print(json.dumps({
    "store": uri,
    "experiment": experiment.name,
    "runs": sorted([r.activation, int(r.seed)] for r in runs.itertuples()),
    "steps": {r.activation: steps[r.run_id]["val_accuracy"].tolist() for r in runs.itertuples()},
    "pooled": sorted([r.student, r.activation] for r in pooled.itertuples())
    if class_experiments
    else None,
}))"""


def execute(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list, dict]:
    """Run the notebook from root/notebooks/ as `make notebook` opens it; return its cells'
    outputs (the probe's left out) and what the probe printed."""
    target = root / "notebooks" / NOTEBOOK.name
    target.parent.mkdir()
    shutil.copy(NOTEBOOK, target)
    notebook = nbformat.read(target, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))
    # The kernel is this Python, whatever kernels the user's Jupyter folders hold.
    write_kernel_spec(tmp_path / "kernels" / "project")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    # The notebook must find the project's store as the pipeline does, from the root.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="project",
        resources={"metadata": {"path": str(target.parent)}},
    )
    client.execute()
    *cells, probe = notebook.cells
    cells = [c for c in cells if c.cell_type == "code"]
    # A warning would greet every student in red.
    assert [o.text for c in cells for o in c.outputs if o.get("name") == "stderr"] == []
    printed = "".join(o.get("text", "") for o in probe.outputs if o.get("name") == "stdout")
    return cells, json.loads(printed)


def figures(cells: list) -> int:
    return sum("image/png" in o.get("data", {}) for c in cells for o in c.outputs)


def text(cell) -> str:
    parts = [o.get("text", "") for o in cell.outputs]
    parts += [o.get("data", {}).get("text/html", "") for o in cell.outputs]
    return "".join(parts)


def test_the_notebook_reads_the_students_own_store(tiny_run, tmp_path, monkeypatch):
    root = copy_repo(tiny_run[0], tmp_path / "project")
    cells, found = execute(root, tmp_path, monkeypatch)
    assert found["store"] == f"sqlite:///{root.resolve() / 'mlflow.db'}"
    assert found["experiment"] == "cifar10-activations"
    assert found["runs"] == [["relu", 42], ["sigmoid", 42]]
    # The step curves read from MLflow are those training wrote beside the model.
    for activation in ("relu", "sigmoid"):
        written = pd.read_csv(root / "results" / "train" / activation / "seed42" / "steps.csv")
        assert found["steps"][activation] == pytest.approx(written["val_accuracy"].tolist())
    assert figures(cells) == 2  # epoch by epoch, and the first steps
    assert found["pooled"] is None
    assert "no class experiments" in text(cells[-1])


def as_a_class(store: Path) -> None:
    """The run's experiment becomes student ada's (seed 42); student bo gets one ReLU run of
    seed 43, a copy of ada's curves."""
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    ada = client.get_experiment_by_name("cifar10-activations").experiment_id
    client.rename_experiment(ada, "cifar10-activations-ada")
    client.set_experiment_tag(ada, STUDENT_TAG, "ada")
    client.set_experiment_tag(ada, SEED_TAG, "42")
    bo = client.create_experiment(
        "cifar10-activations-bo", tags={STUDENT_TAG: "bo", SEED_TAG: "43"}
    )
    (relu,) = client.search_runs([ada], "tags.stage = 'train_relu@42'")
    tags = {"stage": "train_relu@43", "activation": "relu", "seed": "43"}
    run = client.create_run(bo, run_name="train_relu@43", tags=tags).info.run_id
    for key in ("val_accuracy", "step_val_accuracy"):
        client.log_batch(run, metrics=client.get_metric_history(relu.info.run_id, key))
    client.set_terminated(run)


def test_the_notebook_pools_a_class(tiny_run, tmp_path, monkeypatch):
    root = copy_repo(tiny_run[0], tmp_path / "project")
    as_a_class(root / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bo")
    cells, found = execute(root, tmp_path, monkeypatch)
    assert found["experiment"] == "cifar10-activations-bo"  # the student's own, by account
    assert found["runs"] == [["relu", 43]]
    assert found["pooled"] == [["ada", "relu"], ["ada", "sigmoid"], ["bo", "relu"]]
    assert figures(cells) == 3  # and the class's curves
    assert "never_escaped" in text(cells[-1])
