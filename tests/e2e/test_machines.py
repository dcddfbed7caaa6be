"""Experiments across machines, run as the README writes them: three clones of one bare git
remote, a folder as the DVC remote, and one real tracking server. Machines A and B each run and
push an experiment at the same time; machine C pulls both and gets A's models without training."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow
import pytest
from project import (
    GIT,
    clean_env,
    commit,
    make_repo,
    mlflow_server,
    readme_blocks,
    run,
    start_script,
)

pytestmark = pytest.mark.servers

MACHINES = {"A": ("machine-a-lr-0.0005", "0.0005"), "B": ("machine-b-lr-0.002", "0.002")}
STAGES = {"train_sigmoid@42", "train_relu@42", "evaluate", "report"}
# Names git needs for the commits `dvc exp run` makes, whatever the machine's git config says.
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}


def finish(proc: subprocess.Popen, log: Path) -> str:
    proc.wait(timeout=600)
    output = log.read_text()
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output
    return output


def test_experiments_from_two_machines_meet_on_a_third(tmp_path, tiny_archive):
    run_experiment, collect = readme_blocks("machines")
    project = make_repo(tmp_path / "project", *tiny_archive, clean_env(**IDENTITY))
    run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "dvc-store")], project, clean_env())
    commit(project, clean_env(), "a DVC remote for the team")
    origin = tmp_path / "origin.git"
    run(["git", "clone", "-q", "--bare", str(project), str(origin)], tmp_path, clean_env())
    clones = {}
    for machine in ("A", "B", "C"):
        clones[machine] = tmp_path / f"machine-{machine}"
        run([*GIT, "clone", "-q", str(origin), str(clones[machine])], tmp_path, clean_env())

    with mlflow_server(tmp_path) as uri:
        env = clean_env(MLFLOW_TRACKING_URI=uri, **IDENTITY)
        running = {
            m: start_script(
                run_experiment, clones[m], env | {"EXP": exp, "LR": lr}, tmp_path / f"{m}.log"
            )
            for m, (exp, lr) in MACHINES.items()
        }
        for m, proc in running.items():
            finish(proc, tmp_path / f"{m}.log")
        names = {"EXP_A": MACHINES["A"][0], "EXP_B": MACHINES["B"][0]}
        output = finish(
            start_script(collect, clones["C"], env | names, tmp_path / "C.log"), tmp_path / "C.log"
        )
        assert "Running stage" not in output, output[-4000:]

        shown = json.loads(run(["dvc", "exp", "show", "--json"], clones["C"], env))
        experiments = {
            e["name"]: e["revs"][0]["data"] for b in shown for e in (b.get("experiments") or [])
        }
        losses = {}
        for machine, (exp, lr) in MACHINES.items():
            data = experiments[exp]
            assert data["params"]["params.yaml"]["data"]["train"]["learning_rate"] == float(lr)
            metrics = data["metrics"]["results/test_metrics.json"]["data"]
            # What the machine's own run wrote, listed on machine C (which leaves out nulls).
            ran = json.loads((clones[machine] / "results/test_metrics.json").read_text())
            for activation, numbers in ran.items():
                for key in ("test_accuracy", "test_loss"):
                    assert metrics[activation][key] == numbers[key], (exp, activation, key)
            losses[exp] = metrics["relu"]["test_loss"]
        # The same data, seed and code: only the learning rate can tell the two models apart.
        assert len(set(losses.values())) == 2, losses
        # A's models came back from the DVC remote, byte for byte, and nothing is stale.
        for activation in ("sigmoid", "relu"):
            path = f"models/{activation}/seed42.keras"
            assert (clones["C"] / path).read_bytes() == (clones["A"] / path).read_bytes(), path
        assert "up to date" in run(["dvc", "status"], clones["C"], env)

        client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("cifar10-activations")
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        for exp, _ in MACHINES.values():
            stages = {r.info.run_name for r in runs if r.data.tags.get("dvc_experiment") == exp}
            assert stages >= STAGES, (exp, stages)
