"""Main tells the truth: the committed dvc.lock, results and report are what the committed code
and params.yaml produce, except where the data was read from; and nothing names this machine."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest
import yaml
from project import PROJECT

# Where the run here read the archive from is the only thing allowed to differ.
DATA_LOCATION = {"data.url", "data.sha256"}
# A folder of a particular machine, as it would appear in a committed file.
LOCAL_PATH = re.compile(r"(file://)?/(work|tmp|root|home|Users|mnt|srv|opt)/[A-Za-z0-9_.-]+/")


def lock() -> dict:
    return yaml.safe_load((PROJECT / "dvc.lock").read_text())["stages"]


def flat(params: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flat(value, f"{name}.")
        else:
            out[name] = value
    return out


def test_the_lock_differs_from_params_yaml_only_in_the_data_location():
    params = flat(yaml.safe_load((PROJECT / "params.yaml").read_text()))
    differences = set()
    for stage in lock().values():
        recorded = flat(stage.get("params", {}).get("params.yaml", {}))
        differences |= {key for key, value in recorded.items() if params.get(key) != value}
    assert differences <= DATA_LOCATION, sorted(differences)


def test_the_lock_records_the_committed_code_and_results():
    """Every file dvc.lock names that git tracks has the content the lock records."""
    tracked = set(
        subprocess.run(
            ["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    checked, wrong = 0, []
    for name, stage in lock().items():
        for entry in [*stage.get("deps", []), *stage.get("outs", [])]:
            path = entry["path"]
            if path in tracked and not entry["md5"].endswith(".dir"):
                checked += 1
                if hashlib.md5((PROJECT / path).read_bytes()).hexdigest() != entry["md5"]:
                    wrong.append(f"{name}: {path}")
    assert checked > 10 and wrong == [], wrong


def test_no_committed_result_names_a_folder_of_this_machine():
    files = subprocess.run(
        ["git", "ls-files", "dvc.lock", "params.yaml", "results", "reports", "README.md"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = [
        f
        for f in files
        if f.endswith((".md", ".json", ".csv", ".lock", ".yaml", ".txt", ".ok"))
        and LOCAL_PATH.search((PROJECT / f).read_text())
    ]
    assert found == []


def readme_rows() -> dict[str, list[str]]:
    """The README's results table: first cell (the model) → the other cells."""
    text = (PROJECT / "README.md").read_text()
    table = text[text.index("| model | test accuracy |") :].split("\n\n", 1)[0]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return {cells[0].strip().lower(): [c.strip() for c in cells[1:]] for cells in rows}


def test_the_readme_quotes_the_committed_results():
    import json

    metrics = json.loads((PROJECT / "results" / "test_metrics.json").read_text())
    rows = readme_rows()
    assert sorted(rows) == ["relu", "sigmoid"]
    for activation, (accuracy, loss, _tutorial) in rows.items():
        assert accuracy == f"{metrics[activation]['test_accuracy']:.4f}", activation
        assert loss == f"{metrics[activation]['test_loss']:.4f}", activation
    text = " ".join((PROJECT / "README.md").read_text().split())
    summary = {
        a: json.loads((PROJECT / f"results/curves/{a}/train.json").read_text())
        for a in ("sigmoid", "relu")
    }
    (sigmoid,) = summary["sigmoid"]["escape_step_per_seed"].values()
    (sigmoid_epoch,) = summary["sigmoid"]["escape_epoch_per_seed"].values()
    (relu,) = summary["relu"]["escape_step_per_seed"].values()
    per_epoch = summary["relu"]["steps_per_epoch"]
    # The last step the step curve measured: the first field of its last line.
    measured = int(
        (PROJECT / "results/curves/sigmoid/steps.csv").read_text().split()[-1].split(",")[0]
    )
    sigmoid_text = (
        f"sigmoid stayed at chance for its first {sigmoid} training steps (of {per_epoch} in an "
        "epoch)"
        if sigmoid is not None
        else f"sigmoid was still at chance after the {measured:,} training steps measured step by "
        f"step ({per_epoch} make an epoch) and left it in epoch {sigmoid_epoch}"
    )
    assert f"{sigmoid_text}; ReLU left chance after {relu}" in text


def test_the_classroom_page_quotes_its_load_test():
    """docs/classroom.md's load-test table against the tool's output committed beside it."""
    import json

    load = json.loads((PROJECT / "docs" / "classroom-load.json").read_text())
    text = " ".join((PROJECT / "docs" / "classroom.md").read_text().split())
    artifact = load["by_kind"]["log_artifact"]
    assert load["client_errors"] == [] and load["clients"] == 30
    expected = [
        f"| {load['requests']:,}, none refused or failed |",
        f"| {load['metric_values_sent']:,} / {load['metric_values_in_store']:,} |",
        f"| {load['p50_ms']:.0f} ms / {load['p95_ms'] / 1000:.1f} s |",
        f"| {artifact['p50_ms']:.0f} ms / {artifact['p95_ms'] / 1000:.1f} s |",
        f"| {load['total_seconds']:.0f} s |",
        "Three of them were real students",
    ]
    for quoted in expected:
        assert quoted in text, quoted
    assert len(load["real_students"]) == 3
    assert all(r["exit"] == 0 for r in load["real_students"].values())


def test_every_committed_study_cell_keeps_each_seeds_files():
    """A cell copied with DVC's own .gitignore files in it would leave its per-seed results out
    of git: the report then fails in every fresh clone."""
    from pipeline.params import parse_params
    from pipeline.studies import SEED_FILES

    tracked = set(
        subprocess.run(
            ["git", "ls-files", "reports/studies"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    )
    assert not [f for f in tracked if f.endswith(".gitignore")]
    for params in sorted((PROJECT / "reports/studies").glob("*/*/params.yaml")):
        cell = params.parent.relative_to(PROJECT).as_posix()
        train = parse_params(yaml.safe_load(params.read_text())).train
        for activation in train.activations:
            for seed in train.seeds:
                for name in SEED_FILES:
                    path = f"{cell}/results/train/{activation}/seed{seed}/{name}"
                    assert path in tracked, f"{path} is not committed"


def test_the_prespecified_verdicts_are_those_of_the_committed_study(tmp_path):
    """prespecified.md and .json are what tools/prespecified.py writes from the committed study
    (it needs the history back to the commit it judges by)."""
    study = PROJECT / "reports/studies/claims"
    commit = json.loads((study / "prespecified.json").read_text())["commit"]
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=PROJECT)
    if known.returncode != 0:
        pytest.skip(f"this clone's history does not reach commit {commit}")
    subprocess.run(
        [sys.executable, "tools/prespecified.py", "--commit", commit, "--output", str(tmp_path)],
        cwd=PROJECT,
        check=True,
    )
    for name in ("prespecified.md", "prespecified.json"):
        assert (tmp_path / name).read_text() == (study / name).read_text(), name
