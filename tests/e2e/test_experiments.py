"""DVC experiments: queued runs, two at a time, land in the main repository's MLflow store."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from project import clean_env, commit, logged_runs, make_repo, run

pytestmark = pytest.mark.slow


def test_two_queued_experiments_run_in_parallel_and_log_to_the_main_store(tmp_path, tiny_archive):
    env = clean_env()
    root = make_repo(tmp_path / "project", *tiny_archive, env)
    run(["dvc", "repro"], root, env)
    commit(root, env, "baseline")
    for seed in (1, 2):
        run(
            [
                "dvc",
                "exp",
                "run",
                "--queue",
                "--name",
                f"seed-{seed}",
                "-S",
                f"train.seeds=[{seed}]",
            ],
            root,
            env,
        )
    # The workers it starts outlive it: give them no pipe of ours to hold open.
    started = subprocess.run(
        ["dvc", "queue", "start", "-j", "2"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    assert started.returncode == 0
    deadline = time.monotonic() + 900
    while True:
        status = run(["dvc", "queue", "status"], root, env)
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)
    subprocess.run(
        ["dvc", "queue", "stop", "--kill"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )
    assert status.count("Success") == 2, status
    # Both landed in the main store, not in DVC's temporary copies.
    assert not list((root / ".dvc" / "tmp" / "exps").rglob("mlflow.db"))
    runs = logged_runs(f"sqlite:///{root / 'mlflow.db'}")
    for seed, name in ((1, "seed-1"), (2, "seed-2")):
        stages = sorted(r.info.run_name for r in runs if r.data.tags.get("dvc_experiment") == name)
        # download and preprocess did not change: DVC restored them instead of running them.
        assert stages == ["evaluate", "report", f"train_relu@{seed}", f"train_sigmoid@{seed}"], (
            name,
            stages,
        )
    # dvc exp show lists the test metrics of each experiment.
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env))
    experiments = {
        exp["name"]: exp["revs"][0]["data"]
        for baseline in shown
        for exp in (baseline.get("experiments") or [])
    }
    for name in ("seed-1", "seed-2"):
        metrics = experiments[name]["metrics"]["results/test_metrics.json"]["data"]
        assert 0.0 <= metrics["relu"]["test_accuracy"] <= 1.0
    # dvc plots diff compares the two experiments' validation curves.
    diff = json.loads(
        run(
            [
                "dvc",
                "plots",
                "diff",
                "seed-1",
                "seed-2",
                "--json",
                "--targets",
                "validation_accuracy",
            ],
            root,
            env,
        )
    )
    (plot,) = diff["data"]["validation_accuracy"]
    points = plot["content"]["data"]["values"]
    assert {(p["rev"], p["filename"]) for p in points} == {
        (rev, f"curves/{activation}/history.csv")
        for rev in ("seed-1", "seed-2")
        for activation in ("sigmoid", "relu")
    }
