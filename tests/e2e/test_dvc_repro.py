"""The whole pipeline through real `dvc repro` on the tiny archive, in a throwaway git repo."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import signal
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from project import clean_env, commit, copy_repo, logged_runs, run, set_params
from tiny_cifar import batches, write_archive

from pipeline.splits import load_split

STAGES = [
    "check_params",
    "download",
    "preprocess",
    "train_sigmoid@42",
    "train_relu@42",
    "evaluate",
    "report",
]
# Every stage but check_params, which computes nothing to track, logs an MLflow run.
LOGGED = STAGES[1:]


class Evil:
    """A pickle that would run code if the unpickler let it."""

    def __reduce__(self):
        return (exec, ("open('pwned', 'w').write('x')",))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_run):
    """A copy of the session's tiny run (tag `baseline`), for this module's tests to change;
    `repo` gives each of them that state."""
    source, first = tiny_run
    return copy_repo(source, tmp_path_factory.mktemp("project") / "repo"), clean_env(), first


@pytest.fixture
def repo(first_run):
    """The shared repository, checked to be as the first run left it (its params and an up to
    date `dvc status`) before each test: every test starts from that state, not from another
    test's edits, and each test that changes the state puts it back."""
    root, env, _ = first_run
    changed = subprocess.run(["git", "diff", "--quiet", "baseline", "--", "params.yaml"], cwd=root)
    assert changed.returncode == 0, "an earlier test left params.yaml changed"
    assert "up to date" in run(["dvc", "status"], root, env), "an earlier test left it stale"
    return first_run


def stages_run(output: str) -> list[str]:
    """The stages `dvc repro` ran, in order."""
    return re.findall(r"Running stage '([^']+)'", output)


def test_every_stage_ran_and_wrote_its_outputs(repo):
    root, _, first = repo
    assert stages_run(first) == STAGES
    for path in [
        "data/raw/cifar-10-python.tar.gz",
        "data/processed/train.npz",
        "models/sigmoid/seed42.keras",
        "models/relu/seed42.keras",
        "results/train/relu/seed42/history.csv",
        "results/curves/relu/history.csv",
        "results/test_metrics.json",
        "reports/report.md",
        "reports/figures/curves.png",
    ]:
        assert (root / path).exists(), path


def test_metrics_file_is_nested_per_activation(repo):
    """What `dvc metrics show` lists is each model's accuracy and loss on the test split,
    computed here again from the model files."""
    import keras

    from pipeline.model import CUSTOM_OBJECTS

    root, env, _ = repo
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], root, env))
    metrics = shown[""]["data"]["results/test_metrics.json"]["data"]
    assert set(metrics) == {"sigmoid", "relu"}
    images, labels = load_split(root / "data/processed", "test")
    for activation in ("sigmoid", "relu"):
        path = root / f"models/{activation}/seed42.keras"
        model = keras.saving.load_model(path, custom_objects=CUSTOM_OBJECTS)
        probabilities = model.predict(images, verbose=0)
        accuracy = np.mean(probabilities.argmax(axis=1) == labels)
        picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1 - 1e-7)
        assert metrics[activation]["test_accuracy"] == pytest.approx(accuracy)
        assert metrics[activation]["test_loss"] == pytest.approx(-np.log(picked).mean(), rel=1e-5)


def test_examples_show_evaluate_n_examples_test_images(repo):
    root, _, _ = repo
    examples = pd.read_csv(root / "results/examples.csv")
    _, labels = load_split(root / "data/processed", "test")
    classes = json.loads((root / "data/processed/meta.json").read_text())["class_names"]
    assert examples["index"].tolist() == [0, 1, 2, 3]  # evaluate.n_examples is 4 here
    assert examples["true_class"].tolist() == [classes[i] for i in labels[:4]]


def test_mlflow_store_has_a_finished_run_per_stage(repo):
    root, _, _ = repo
    runs = logged_runs(f"sqlite:///{root / 'mlflow.db'}")
    by_name = {r.info.run_name: r for r in runs}
    assert sorted(by_name) == sorted(LOGGED)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert by_name["download"].data.params["data.url"].startswith("file://")
    assert by_name["evaluate"].data.params == {
        "evaluate.n_examples": "4",
        "train.seeds": "42",
        "train.extra_activations": "",  # what dvc.yaml lists for evaluate: none here
        "activations": "sigmoid,relu",
    }
    client = mlflow.MlflowClient()
    for activation in ("sigmoid", "relu"):
        run = by_name[f"train_{activation}@42"]
        assert run.data.params["train.epochs"] == "1"
        assert run.data.tags["activation"] == activation and run.data.tags["seed"] == "42"
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [1], key
    models = mlflow.search_logged_models(
        experiment_ids=[runs[0].info.experiment_id], output_format="list"
    )
    # One model per run of a train stage (evaluate registers those, logging no copies).
    run_names = {r.info.run_id: r.info.run_name for r in runs}
    assert sorted(run_names[m.source_run_id] for m in models) == [
        "train_relu@42",
        "train_sigmoid@42",
    ]
    report_files = {a.path for a in client.list_artifacts(by_name["report"].info.run_id, "report")}
    assert "report/report.md" in report_files


def test_evaluate_scores_the_test_split_and_nothing_else(repo):
    """The test set is touched only by evaluate, and evaluate touches only the test set: every
    confusion matrix counts exactly the test split's images of each class."""
    root, _, _ = repo
    _, test_labels = load_split(root / "data/processed", "test")
    _, val_labels = load_split(root / "data/processed", "validation")
    evaluation = json.loads((root / "results/evaluation.json").read_text())
    for activation in ("sigmoid", "relu"):
        confusion = np.array(evaluation["models"][activation]["confusion"])
        assert confusion.sum(axis=1).tolist() == np.bincount(test_labels, minlength=10).tolist()
    assert len(val_labels) != len(test_labels)  # so a validation-split slip cannot pass


def test_second_repro_runs_nothing(repo):
    root, env, _ = repo
    again = run(["dvc", "repro"], root, env)
    assert stages_run(again) == []
    assert "up to date" in run(["dvc", "status"], root, env)


def test_two_classes_with_a_sigmoid_output_run_end_to_end(repo):
    """Claim 9's arm as a user reruns it: two of the archive's classes, one sigmoid unit."""
    root, env, _ = repo
    output = run(
        [
            "dvc", "exp", "run",
            "-S", "data.classes=[class5,class3]",
            "-S", "model.output=sigmoid",
            "-S", "data.val_size=20",
        ],
        root,
        env,
    )  # fmt: skip
    assert "train_sigmoid@42" in stages_run(output) and "report" in stages_run(output)
    meta = json.loads((root / "data/processed/meta.json").read_text())
    assert meta["class_names"] == ["class5", "class3"]
    assert meta["sizes"] == {"train": 60, "validation": 20, "test": 20}
    evaluation = json.loads((root / "results/evaluation.json").read_text())
    assert evaluation["class_names"] == ["class5", "class3"]
    relu = evaluation["models"]["relu"]
    assert np.array(relu["confusion"]).shape == (2, 2) and np.sum(relu["confusion"]) == 20
    import keras

    from pipeline.model import CUSTOM_OBJECTS, TWO_WAY

    model = keras.saving.load_model(
        root / "models/relu/seed42.keras", custom_objects=CUSTOM_OBJECTS
    )
    assert model.layers[-1].name == TWO_WAY and model.get_layer("dense_1").units == 1
    report = (root / "reports/report.md").read_text()
    assert "exceeded 0.75" in report  # half again two classes' chance, not ten's 0.15
    run(["git", "checkout", "--", "."], root, env)  # params, dvc.lock and the committed results
    run(["dvc", "checkout", "--force"], root, env)
    assert "up to date" in run(["dvc", "status"], root, env)


def snapshot(root: Path, *folders: str) -> dict[str, bytes]:
    """Every file under `folders`, by path: to tell that nothing was deleted or changed."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for folder in folders
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def lock_entry(root: Path, stage: str) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]


def refused_archive(kind: str, tmp_path: Path) -> tuple[str, str, str]:
    """(data.url, data.sha256, the error it gets) for an archive the pipeline must refuse."""
    members = batches(2, 1, seed=0)
    path = tmp_path / f"{kind}.tar.gz"
    if kind == "hostile":
        members["data_batch_2"] = pickle.dumps({b"data": Evil(), b"labels": []})
        return path.as_uri(), write_archive(path, members), "a batch pickle tries to build"
    write_archive(path, members)
    if kind == "checksum":
        return path.as_uri(), "0" * 64, "checksum mismatch"
    path.write_bytes(path.read_bytes()[:500])  # corrupt, with its checksum pinned
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest(), "corrupt or truncated"


@pytest.mark.parametrize("kind", ["hostile", "checksum", "corrupt"])
def test_refused_archive_and_the_readmes_recovery_restores_everything(repo, tmp_path, kind):
    root, env, _ = repo
    commit(root, env, "a good run")
    url, sha256, message = refused_archive(kind, tmp_path)
    set_params(root, data__url=url, data__sha256=sha256)
    before = lock_entry(root, "preprocess")
    good = snapshot(root, "results", "reports", "models", "data")
    result = subprocess.run(["dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], output[-3000:]
    assert not (tmp_path / "pwned").exists() and not (root / "pwned").exists()
    assert lock_entry(root, "preprocess") == before  # nothing downstream was recorded
    # The recovery the README gives: the last good params and lock from git, outputs from cache.
    run(["git", "checkout", "--", "."], root, env)  # params, dvc.lock and the committed results
    run(["dvc", "checkout", "--force"], root, env)
    assert "up to date" in run(["dvc", "status"], root, env)
    assert snapshot(root, "results", "reports", "models", "data") == good


def test_interrupted_repro_leaves_no_model_and_next_repro_completes(repo):
    root, env, _ = repo
    set_params(root, train__epochs=400)
    proc = subprocess.Popen(
        ["dvc", "repro", "train_relu"],
        cwd=root,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for line in proc.stdout:
        if line.startswith("Epoch 3/"):
            break
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    # The stage's one line (test_faults sends SIGTERM to a stage alone).
    assert "error: interrupted" in rest and "Traceback" not in rest, rest[-3000:]
    assert not (root / "models/relu/seed42.keras").exists()
    runs = logged_runs(f"sqlite:///{root / 'mlflow.db'}")
    latest = max(
        (r for r in runs if r.info.run_name == "train_relu@42"), key=lambda r: r.info.start_time
    )
    assert latest.info.status == "KILLED"
    set_params(root, train__epochs=1)
    run(["dvc", "repro"], root, env)
    assert "up to date" in run(["dvc", "status"], root, env)
    assert (root / "models/relu/seed42.keras").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=-3", "param 'train.epochs': Input should be greater than 0"),
        ("model.kernel_size=32", "leave nothing of a 32-pixel image"),
        ("data.val_size=60000", "param 'data.val_size' must be less than 50,000"),
        ("data.url=ftp://example.org/x.tar.gz", "param 'data.url': must be a URL"),
        ("train.extra_activations=[my-act]", "neither a Keras activation name"),
    ],
)
def test_a_refused_param_deletes_nothing(repo, override, message):
    root, env, _ = repo
    commit(root, env, "a good state")
    good = snapshot(root, "results", "reports", "models", "data")
    result = subprocess.run(
        ["dvc", "exp", "run", "-S", override], cwd=root, env=env, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], output[-2000:]
    assert "Traceback" not in output
    assert snapshot(root, "results", "reports", "models", "data") == good
    run(["git", "checkout", "params.yaml"], root, env)
    assert "up to date" in run(["dvc", "status"], root, env)


# Chromium as the MLflow UI test drives it; every request that is not a local file is refused,
# as it would be on a machine without internet.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run"]
# DVC's linear template colours lines by revision (one here: the workspace) and dashes them by
# file (sigmoid's and ReLU's): the colour vega gives the first revision.
SERIES_RGB = ((0x94, 0x5D, 0xD6),)
COUNT_COLOURS = """canvas => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  return COLOURS.map(([r, g, b]) => {
    let n = 0;
    for (let i = 0; i < data.length; i += 4)
      if (Math.abs(data[i] - r) < 12 && Math.abs(data[i + 1] - g) < 12 && Math.abs(data[i + 2] - b) < 12) n++;
    return n;
  });
}"""


@pytest.mark.servers
def test_plots_show_draws_both_curves_without_internet(repo, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it"
        )
    from playwright.sync_api import sync_playwright

    root, env, _ = repo
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root, env)
    page_file = tmp_path / "plots" / "index.html"
    html = page_file.read_text()
    assert "cdn.jsdelivr" not in html
    for activation in ("sigmoid", "relu"):  # both series are in the first chart's data
        assert f'"filename": "{activation}/steps.csv"' in html
    refused = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.route(
                "**/*",
                lambda route: (
                    route.continue_()
                    if route.request.url.startswith("file:")
                    else (refused.append(route.request.url), route.abort())
                ),
            )
            page.goto(page_file.as_uri())
            page.wait_for_selector("canvas", timeout=30_000)
            canvases = page.locator("canvas")
            assert canvases.count() == 5  # the five plots of dvc.yaml
            script = COUNT_COLOURS.replace("COLOURS", str([list(c) for c in SERIES_RGB]))
            first = canvases.first.evaluate(script)
        finally:
            browser.close()
    assert refused == []
    # The lines are drawn: a blank or failed chart has no pixel of the series' colour.
    assert all(pixels > 200 for pixels in first), f"line pixels per colour: {first}"
