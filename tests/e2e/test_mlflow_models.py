"""What an MLflow user does with the pipeline's runs, against one real tracking server: the
README's experiments across machines (three clones of one bare git remote and a folder DVC
remote; machines A and B each run and push an experiment at the same time, machine C pulls both
and gets A's models without training), then, on machine A's run, every stage's run and artifacts
on the server, a DVC remote that restores everything without retraining, a logged model loaded
where this package is not, the champion served from the registry, which data and machine a run
used, runs ranked by test accuracy, and runs compared in the UI in a real browser. One file, so
that machine A's run is the one the other tests read."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from project import (
    GIT,
    clean_env,
    commit,
    free_port,
    make_repo,
    readme_blocks,
    run,
    set_params,
    start_script,
    wait_for_url,
)

pytestmark = pytest.mark.servers

# Stages that log an MLflow run (check_params computes nothing to track).
STAGES = ["download", "preprocess", "train_sigmoid@42", "train_relu@42", "evaluate", "report"]

MACHINES = {"A": ("machine-a-lr-0.0005", "0.0005"), "B": ("machine-b-lr-0.002", "0.002")}
# B logs to an experiment of its own on the same server: the registry and the experiment the
# tests after the machines' read hold A's run alone.
B_EXPERIMENT = "cifar10-activations-machine-b"
MACHINE_STAGES = {"train_sigmoid@42", "train_relu@42", "evaluate", "report"}
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


@pytest.fixture(scope="module")
def machines(tmp_path_factory, tiny_archive, tracking_server):
    """The README's first machines block run on machines A and B at once, logging to the
    tracking server: (the clones by machine, the environment they ran in, the folder).

    `data.url` is a path relative to the repository (the clones sit side by side, so it reads
    the same in each), as runs here give it, so that no param or tag the server receives names
    a folder of this machine.
    """
    uri, _ = tracking_server
    tmp = tmp_path_factory.mktemp("machines")
    run_experiment, _ = readme_blocks("machines")
    project = make_repo(tmp / "project", *tiny_archive, clean_env(**IDENTITY))
    set_params(project, data__url=os.path.relpath(tiny_archive[0], project))
    run(["dvc", "remote", "add", "-d", "store", str(tmp / "dvc-store")], project, clean_env())
    commit(project, clean_env(), "a DVC remote for the team, data.url relative")
    origin = tmp / "origin.git"
    run(["git", "clone", "-q", "--bare", str(project), str(origin)], tmp, clean_env())
    clones = {}
    for machine in ("A", "B", "C"):
        clones[machine] = tmp / f"machine-{machine}"
        run([*GIT, "clone", "-q", str(origin), str(clones[machine])], tmp, clean_env())
    set_params(clones["B"], mlflow__experiment=B_EXPERIMENT)  # uncommitted: B's own setting
    env = clean_env(MLFLOW_TRACKING_URI=uri, **IDENTITY)
    running = {
        m: start_script(run_experiment, clones[m], env | {"EXP": exp, "LR": lr}, tmp / f"{m}.log")
        for m, (exp, lr) in MACHINES.items()
    }
    for m, proc in running.items():
        finish(proc, tmp / f"{m}.log")
    return clones, env, tmp


@pytest.fixture(scope="module")
def served_repo(machines):
    """Machine A's clone, as its experiment left it: (its folder, its environment)."""
    clones, env, _ = machines
    return clones["A"], env


def test_experiments_from_two_machines_meet_on_a_third(machines, tracking_server):
    clones, env, tmp = machines
    uri, _ = tracking_server
    _, collect = readme_blocks("machines")
    names = {"EXP_A": MACHINES["A"][0], "EXP_B": MACHINES["B"][0]}
    output = finish(start_script(collect, clones["C"], env | names, tmp / "C.log"), tmp / "C.log")
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
    ids = [client.get_experiment_by_name(n).experiment_id for n in (EXPERIMENT, B_EXPERIMENT)]
    runs = client.search_runs(ids, max_results=1000)
    for exp, _ in MACHINES.values():
        stages = {r.info.run_name for r in runs if r.data.tags.get("dvc_experiment") == exp}
        assert stages >= MACHINE_STAGES, (exp, stages)


def test_every_stage_logs_to_the_server(served_repo, tracking_server):
    root, _ = served_repo
    uri, server_root = tracking_server
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cifar10-activations")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == sorted(STAGES)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert not (root / "mlflow.db").exists()  # nothing went to a local store
    for activation in ("sigmoid", "relu"):
        run_id = by_name[f"train_{activation}@42"].info.run_id
        assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [1]
        assert [m.step for m in client.get_metric_history(run_id, "grad_norm/conv2d/kernel")] == [
            0,
            1,
        ]
    report_id = by_name["report"].info.run_id
    files = {a.path for a in client.list_artifacts(report_id, "report/figures")}
    assert {"report/figures/curves.png", "report/figures/gradients.png"} <= files
    mlflow.set_tracking_uri(uri)
    text = Path(
        mlflow.artifacts.download_artifacts(run_id=report_id, artifact_path="report/report.md")
    ).read_text()
    assert text.startswith("# Sigmoid vs ReLU on CIFAR-10")
    # Artifacts went through the server into its --artifacts-destination.
    assert any((server_root / "artifacts").rglob("report.md"))


def test_push_clone_pull_restores_everything_without_retraining(served_repo, tmp_path):
    root, env = served_repo
    remote = tmp_path / "remote"  # a local folder standing in for S3 or GCS
    run(["dvc", "remote", "add", "--default", "elsewhere", str(remote)], root, env)
    commit(root, env, "results and remote")
    run(["dvc", "push"], root, env)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    assert not (clone / "models").exists()
    run(["dvc", "pull"], clone, env)
    assert "up to date" in run(["dvc", "status"], clone, env)
    for path in (
        "data/raw/cifar-10-python.tar.gz",
        "data/processed/train.npz",
        "models/sigmoid/seed42.keras",
        "models/relu/seed42.keras",
    ):
        assert (clone / path).read_bytes() == (root / path).read_bytes(), path
    assert json.loads((clone / "results/test_metrics.json").read_text()) == json.loads(
        (root / "results/test_metrics.json").read_text()
    )
    again = run(["dvc", "repro"], clone, env)
    assert "Running stage" not in again


EXPERIMENT = "cifar10-activations"
CHROMIUM = Path("/usr/bin/chromium")
# What works for Debian's Chromium here, as root, on a machine with no outside network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Runs in a fresh interpreter, in a folder with no copy of the project: loads every model both
# ways and reports whether anything imported this package.
FRESH_LOAD = """
import json, sys
import mlflow, numpy as np
images = np.load(sys.argv[1])
out = {}
for uri in sys.argv[2:]:
    out[uri] = {
        "pyfunc": np.asarray(mlflow.pyfunc.load_model(uri).predict(images)).tolist(),
        "keras": np.asarray(mlflow.keras.load_model(uri).predict(images, verbose=0)).tolist(),
    }
out["pipeline imported"] = sorted(m for m in sys.modules if m.split(".")[0] == "pipeline")
print("RESULT " + json.dumps(out))
"""


def experiment_id(uri: str) -> str:
    return mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(EXPERIMENT).experiment_id


def runs_by_name(uri: str) -> dict:
    client = mlflow.MlflowClient(tracking_uri=uri)
    return {r.info.run_name: r for r in client.search_runs([experiment_id(uri)])}


def first_test_images(root: Path, n: int = 16) -> np.ndarray:
    with np.load(root / "data/processed/test.npz") as arrays:
        return arrays["images"][:n]


def stage_predictions(root: Path, activation: str, images: np.ndarray) -> np.ndarray:
    """What the train stage's saved .keras model predicts (loaded the project's way)."""
    import keras

    from pipeline.model import CUSTOM_OBJECTS

    model = keras.saving.load_model(
        root / f"models/{activation}/seed42.keras", custom_objects=CUSTOM_OBJECTS
    )
    return model.predict(images, verbose=0)


def fresh_env(uri: str) -> dict[str, str]:
    env = clean_env(MLFLOW_TRACKING_URI=uri)
    env.pop("PYTHONPATH", None)
    return env


def test_every_logged_model_loads_and_predicts_where_the_project_is_not(
    served_repo, tracking_server, tmp_path
):
    root, _ = served_repo
    uri, _ = tracking_server
    models = mlflow.MlflowClient(tracking_uri=uri).search_logged_models([experiment_id(uri)])
    # One per train run; evaluate registers those, it logs no copies.
    assert sorted(m.name for m in models) == ["relu", "sigmoid"]
    images = first_test_images(root)
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "load.py").write_text(FRESH_LOAD)
    result = subprocess.run(
        [sys.executable, "load.py", "images.npy", *[m.model_uri for m in models]],
        cwd=tmp_path,
        env=fresh_env(uri),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert found.pop("pipeline imported") == []
    for model in models:
        expected = stage_predictions(root, model.name, images)
        for how in ("pyfunc", "keras"):
            got = np.asarray(found[model.model_uri][how])
            assert got.shape == (len(images), 10)
            assert np.abs(got - expected).max() <= 1e-5, (model.name, how)


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_the_registry_has_a_champion_that_serves(served_repo, tracking_server, tmp_path):
    root, _ = served_repo
    uri, _ = tracking_server
    client = mlflow.MlflowClient(tracking_uri=uri)
    test = json.loads((root / "results/test_metrics.json").read_text())
    best = max(test, key=lambda a: test[a]["test_accuracy"])
    runs = runs_by_name(uri)
    for activation in ("sigmoid", "relu"):
        name = f"{EXPERIMENT}-{activation}"
        (version,) = client.search_model_versions(f"name = '{name}'")
        # The registered version is the model its training run logged.
        assert version.run_id == runs[f"train_{activation}@42"].info.run_id
        assert version.tags["test_accuracy"] == f"{test[activation]['test_accuracy']:.4f}"
        assert version.tags["test_loss"] == f"{test[activation]['test_loss']:.4f}"
        assert version.tags["seed"] == "42" and len(version.tags["git_commit"]) == 40
        aliases = client.get_registered_model(name).aliases
        assert ("champion" in aliases) == (activation == best), (activation, aliases)

    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{EXPERIMENT}-{best}@champion",
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=fresh_env(uri),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_url(f"http://127.0.0.1:{port}/ping", proc, log, seconds=180)
        images = first_test_images(root)
        status, body = post(f"http://127.0.0.1:{port}/invocations", {"inputs": images.tolist()})
        assert status == 200, body
        served = np.asarray(body["predictions"])
        difference = np.abs(served - stage_predictions(root, best, images)).max()
        print(f"served vs the stage's .keras model: max difference {difference:.3g}")
        assert difference <= 1e-5
        # Wrong shape, values no uint8 holds, text: MLflow's schema error, not a crash.
        wrong_shape = images[:, :, :, 0].tolist()
        too_large = (images.astype(int) + 300).tolist()
        text = np.full(images.shape, "x").tolist()
        for bad, says in (
            (wrong_shape, "does not match expected shape (-1, 32, 32, 3)"),
            (too_large, "out of bounds for uint8"),
            (text, ""),
        ):
            status, body = post(f"http://127.0.0.1:{port}/invocations", {"inputs": bad})
            assert status == 400, body
            assert says in body.get("message", ""), body
        assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_runs_say_which_data_and_machine_they_used_and_their_test_scores(
    served_repo, tracking_server
):
    root, _ = served_repo
    uri, _ = tracking_server
    runs = runs_by_name(uri)
    url = runs["download"].data.params["data.url"]
    digest = {
        split: hashlib.sha256((root / f"data/processed/{split}.npz").read_bytes()).hexdigest()[:32]
        for split in ("train", "validation", "test")
    }
    test = json.loads((root / "results/test_metrics.json").read_text())
    for activation in ("sigmoid", "relu"):
        run = runs[f"train_{activation}@42"]
        inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
        assert sorted(inputs) == ["cifar10-train", "cifar10-validation"]
        for split in ("train", "validation"):
            dataset = inputs[f"cifar10-{split}"].dataset
            assert dataset.digest == digest[split]
            assert json.loads(dataset.source)["uri"] == url
        # MLflow's system metrics: this run's own CPU and memory figures.
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
            run.data.metrics
        )
        # Evaluate put the test numbers where runs are compared.
        assert run.data.metrics["test_accuracy"] == pytest.approx(test[activation]["test_accuracy"])
        assert run.data.metrics["test_loss"] == pytest.approx(test[activation]["test_loss"])
    (test_input,) = runs["evaluate"].inputs.dataset_inputs
    assert test_input.dataset.name == "cifar10-test"
    assert test_input.dataset.digest == digest["test"]
    assert len(set(digest.values())) == 3  # different data, different digests


def test_no_tag_or_param_names_a_local_path(served_repo, tracking_server, machines):
    root, _ = served_repo
    uri, _ = tracking_server
    # The one exception is the test's own: MLflow tags each run with the clone's git remote,
    # here a folder standing in for the team's git host (whose address a real clone has).
    remote = {"mlflow.source.git.repoURL": str(machines[2] / "origin.git")}
    for name, logged in runs_by_name(uri).items():
        values = {**logged.data.tags, **logged.data.params}
        local = {
            k: v
            for k, v in values.items()
            if (v.startswith("/") or str(root) in v) and remote.get(k) != v
        }
        assert local == {}, name


def test_the_ui_lists_both_runs_and_charts_val_accuracy(served_repo, tracking_server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it"
        )
    from playwright.sync_api import sync_playwright

    uri, _ = tracking_server
    base = f"{uri}/#/experiments/{experiment_id(uri)}/runs"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(base)
            for name in ("train_sigmoid@42", "train_relu@42"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=90_000)
            page.screenshot(path=tmp_path / "runs.png")
            page.goto(f"{base}?compareRunsMode=CHART")
            # Charts render as they scroll into view: search for the one wanted, as a user would.
            page.get_by_placeholder("Search metric charts").fill("val_accuracy")
            page.get_by_text("val_accuracy", exact=True).first.wait_for(timeout=90_000)
            page.screenshot(path=tmp_path / "charts.png")
        finally:
            browser.close()
