"""Any Keras activation by name and a user's own function, through `dvc repro`, with no code
change; editing the user's file retrains its model and no other."""

from __future__ import annotations

import json
import re

import mlflow
import pandas as pd
import pytest
from project import clean_env, commit, copy_repo, run, set_params

USER_ACTIVATION = """import keras


def my_act(x):
    \"\"\"A softsign scaled by {scale}.\"\"\"
    return {scale} * x / (1 + keras.ops.abs(x))
"""
EXTRAS = ["mish", "mypkg.acts:my_act"]  # one Keras name, one function of the user's


def trained(output: str) -> list[str]:
    """The train stages `dvc repro` ran, in order."""
    return [s for s in re.findall(r"Running stage '([^']+)'", output) if s.startswith("train_")]


@pytest.fixture(scope="module")
def extra_run(tmp_path_factory, tiny_run):
    """The session's tiny run grown by two extra activations: a Keras name and the user's own."""
    env = clean_env()
    root = copy_repo(tiny_run[0], tmp_path_factory.mktemp("project") / "repo")
    package = root / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "acts.py").write_text(USER_ACTIVATION.format(scale=1.5))
    set_params(root, train__extra_activations=EXTRAS)
    commit(root, env, "two extra activations")
    return root, env, run(["dvc", "repro"], root, env)


def test_every_extra_activation_trains_and_reports_with_its_diagnostics(extra_run):
    root, _, output = extra_run
    # Only the new models: sigmoid's and ReLU's are the first run's.
    assert trained(output) == [f"train_extra@{a}-42" for a in EXTRAS]
    metrics = json.loads((root / "results/test_metrics.json").read_text())
    assert list(metrics) == ["sigmoid", "relu", *EXTRAS]
    report = (root / "reports/report.md").read_text()
    for activation in EXTRAS:
        diagnostics = pd.read_csv(root / f"results/train/{activation}/seed42/diagnostics.csv")
        for quantity in ("mean_slope", "saturated_fraction", "dead_fraction"):
            assert diagnostics[f"{quantity}/dense"].notna().all(), (activation, quantity)
        assert f"| {activation} " in report
    fingerprint = json.loads((root / "results/activations/mypkg.acts:my_act.json").read_text())
    assert fingerprint["source"] == "mypkg/acts.py"
    assert json.loads((root / "results/activations/mish.json").read_text())["source"] == "keras"


def test_editing_the_users_function_retrains_its_model_and_no_other(extra_run):
    root, env, _ = extra_run
    (root / "mypkg/acts.py").write_text(USER_ACTIVATION.format(scale=2.0))
    again = run(["dvc", "repro"], root, env)
    assert trained(again) == ["train_extra@mypkg.acts:my_act-42"]
    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (latest,) = client.search_runs(
        [client.get_experiment_by_name("cifar10-activations").experiment_id],
        "tags.stage = 'train_extra@mypkg.acts:my_act-42'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert latest.info.status == "FINISHED"
    code = [a.path for a in client.list_artifacts(latest.info.run_id, "code/mypkg")]
    assert "code/mypkg/acts.py" in code  # what a loader elsewhere must import
    assert trained(run(["dvc", "repro"], root, env)) == []  # unchanged: nothing retrains
