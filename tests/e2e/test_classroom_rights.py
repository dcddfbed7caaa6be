"""Who holds rights on a student's names, on a real basic-auth server with real accounts: a
student who made a newcomer's experiment and model first loses every right on them when the
teacher's command hands them out, and what she left there is named and not pooled; a student
who aims their pipeline at another student's experiment is stopped by check_params, before DVC
records or deletes anything."""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import Metric, Param
from project import PROJECT, MlflowServer, clean_env, commit, make_repo, run, set_params

from pipeline.classroom import assignment
from pipeline.params import TRAIN_KEYS, load_params, logged_params

pytestmark = pytest.mark.servers

TEACHER_PASSWORD = "teacher-secret-for-tests"
AUTH_INI = """[mlflow]
default_permission = READ
database_uri = sqlite:///{db}
admin_username = teacher
auth_cache_ttl_seconds = 60
"""
TABLE_ROW = re.compile(r"^(\S+)\s+(\S+)\s+\d+\s+cifar10-activations-\1$", re.M)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """The class's server as docs/classroom.md starts it: basic-auth, READ by default."""
    root = tmp_path_factory.mktemp("class-server")
    (root / "auth.ini").write_text(AUTH_INI.format(db=root / "auth.db"))
    env = clean_env(
        MLFLOW_AUTH_CONFIG_PATH=str(root / "auth.ini"),
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        MLFLOW_AUTH_ADMIN_PASSWORD=TEACHER_PASSWORD,
    )
    started = MlflowServer(root, "--app-name", "basic-auth", env=env).start()
    try:
        yield started.uri
    finally:
        started.stop()


def login(uri: str, user: str, password: str, **extra: str) -> dict[str, str]:
    return clean_env(
        MLFLOW_TRACKING_URI=uri,
        MLFLOW_TRACKING_USERNAME=user,
        MLFLOW_TRACKING_PASSWORD=password,
        PYTHONPATH=str(PROJECT),
        **extra,
    )


def classroom(env: dict[str, str], folder: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pipeline.classroom", "--params", str(PROJECT / "params.yaml")]
    return subprocess.run(
        [*command, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def accounts(uri: str, folder: Path, names: str, archive: Path) -> subprocess.CompletedProcess:
    (folder / "class.txt").write_text(names)
    return classroom(
        login(uri, "teacher", TEACHER_PASSWORD),
        folder,
        *("accounts", "class.txt", "--archive", str(archive), "--data-url", "http://room/a.tgz"),
    )


def as_user(monkeypatch, uri: str, user: str, password: str) -> mlflow.MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    return mlflow.MlflowClient(tracking_uri=uri)


def train_run(client: mlflow.MlflowClient, experiment_id: str, activation: str, user: str) -> str:
    """A finished training run the pooled report would take: the class's params, a validation
    curve and a test accuracy. `user` is the `mlflow.user` it says it was logged by."""
    run = client.create_run(
        experiment_id,
        run_name=f"train_{activation}@42",
        tags={"mlflow.user": user, "stage": f"train_{activation}", "activation": activation},
    )
    params = logged_params(load_params(PROJECT / "params.yaml"), TRAIN_KEYS)
    curve = [Metric("val_accuracy", v, 0, step) for step, v in enumerate([0.1, 0.3, 0.5], 1)]
    client.log_batch(
        run.info.run_id,
        metrics=[*curve, Metric("test_accuracy", 0.5, 0, 0)],
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[],
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def status(call) -> int:
    """The HTTP status of a request that must be refused."""
    with pytest.raises(mlflow.exceptions.MlflowException) as caught:
        call()
    return caught.value.get_http_status_code()


def test_a_name_taken_before_its_student_is_listed_is_reclaimed(
    server, tmp_path, tiny_archive, monkeypatch
):
    from mlflow.server.auth.client import AuthServiceClient

    first = accounts(server, tmp_path, "mallory\neve\n", tiny_archive[0])
    assert first.returncode == 0, first.stderr
    passwords = dict(TABLE_ROW.findall(first.stdout))

    # mallory makes alice's experiment and ReLU model before alice is on the list, logs two
    # runs there (one saying it is alice's), registers a version, and gives eve EDIT.
    mallory = as_user(monkeypatch, server, "mallory", passwords["mallory"])
    taken = mallory.create_experiment("cifar10-activations-alice")
    hers = train_run(mallory, taken, "relu", "mallory")
    train_run(mallory, taken, "sigmoid", "alice")
    model = "cifar10-activations-alice-relu"
    mallory.create_registered_model(model)
    mallory.create_model_version(model, f"runs:/{hers}/model", run_id=hers)
    AuthServiceClient(server).grant_user_permission("eve", "experiment", taken, "EDIT")
    # and carol's experiment, keeping its artifacts in one of her own experiment's folders
    own = mallory.get_experiment_by_name("cifar10-activations-mallory").experiment_id
    mallory.create_experiment("cifar10-activations-carol", f"mlflow-artifacts:/{own}")

    names = "mallory\neve\nalice\ncarol\n"
    refused = accounts(server, tmp_path, names, tiny_archive[0])
    assert refused.returncode == 1 and refused.stdout == "", refused.stdout
    (line,) = refused.stderr.splitlines()
    assert line.startswith(
        f"error: the experiment cifar10-activations-carol keeps its artifacts at "
        f"mlflow-artifacts:/{own}, not where this server keeps them"
    ), line
    teacher = as_user(monkeypatch, server, "teacher", TEACHER_PASSWORD)
    with pytest.raises(mlflow.exceptions.RestException, match="RESOURCE_DOES_NOT_EXIST"):
        AuthServiceClient(server).get_user("alice")  # nothing was made, no password lost
    fix = re.search(r"\((mlflow experiments rename [^)]+)\)", line).group(1)
    run(fix.split(), tmp_path, login(server, "teacher", TEACHER_PASSWORD))

    made = accounts(server, tmp_path, names, tiny_archive[0])
    assert made.returncode == 0 and made.stderr == "", made.stderr  # no third-party warning
    lines = made.stdout.splitlines()
    assert lines[:3] == [
        "reclaimed cifar10-activations-alice for alice: removed the rights of eve (EDIT), "
        "mallory (MANAGE); their runs stay there, not pooled: train_relu@42, train_sigmoid@42",
        f"reclaimed {model} for alice: removed the rights of mallory (MANAGE); their versions "
        "stay there: 1",
        "account              password         seed  experiment",
    ], made.stdout
    passwords["alice"] = dict(TABLE_ROW.findall(made.stdout))["alice"]  # the others: unchanged
    carol = teacher.get_experiment_by_name("cifar10-activations-carol")
    assert carol.experiment_id != taken and carol.artifact_location.endswith(carol.experiment_id)

    # Every right mallory and eve had is gone.
    mallory = as_user(monkeypatch, server, "mallory", passwords["mallory"])
    attempts = {
        "tag the experiment": lambda: mallory.set_experiment_tag(taken, "k", "v"),
        "rename the experiment": lambda: mallory.rename_experiment(taken, "mine"),
        "delete the experiment": lambda: mallory.delete_experiment(taken),
        "log a run there": lambda: mallory.create_run(taken),
        "tag her run there": lambda: mallory.set_tag(hers, "k", "v"),
        "rename her run there": lambda: mallory.update_run(hers, name="mine"),
        "delete her run there": lambda: mallory.delete_run(hers),
        "tag the model": lambda: mallory.set_registered_model_tag(model, "k", "v"),
        "rename the model": lambda: mallory.rename_registered_model(model, "mine"),
        "delete the model's version": lambda: mallory.delete_model_version(model, "1"),
        "delete the model": lambda: mallory.delete_registered_model(model),
        "grant herself MANAGE again": lambda: AuthServiceClient(server).grant_user_permission(
            "mallory", "experiment", taken, "MANAGE"
        ),
    }
    for what, attempt in attempts.items():
        assert status(attempt) == 403, what
    eve = as_user(monkeypatch, server, "eve", passwords["eve"])
    assert status(lambda: eve.set_tag(hers, "k", "v")) == 403

    # alice's own runs are pooled; what mallory left is listed apart, with the reason.
    alice = as_user(monkeypatch, server, "alice", passwords["alice"])
    for activation in ("sigmoid", "relu"):
        train_run(alice, taken, activation, "alice")
    alice.set_tag(hers, "seen", "yes")  # the experiment is hers now
    report = classroom(
        login(server, "teacher", TEACHER_PASSWORD), tmp_path, "report", "--output", "class"
    )
    assert report.returncode == 0 and report.stderr == "", report.stderr
    assert "pooled 2 run(s) of 1 student(s)" in report.stdout, report.stdout
    text = (tmp_path / "class/report.md").read_text()
    assert "of 1 student(s) (alice)" in text
    apart = [row for row in text.splitlines() if "took the experiment back" in row]
    assert len(apart) == 2 and all("from eve (EDIT), mallory (MANAGE)" in r for r in apart)


def test_a_student_aimed_at_another_students_experiment_changes_nothing(
    server, tmp_path, tiny_archive
):
    made = accounts(server, tmp_path, "ana\nben\n", tiny_archive[0])
    passwords = dict(TABLE_ROW.findall(made.stdout))
    ben = login(server, "ben", passwords["ben"])
    repo = make_repo(tmp_path / "ben", *tiny_archive, ben)
    set_params(repo, mlflow__experiment="cifar10-activations-ben")
    run(["dvc", "repro", "preprocess"], repo, ben)
    commit(repo, ben, "ran")

    def state() -> dict[str, str]:
        files = [repo / "dvc.lock", repo / "params.yaml", *sorted((repo / "data").rglob("*.*"))]
        files += [repo / "results/params.ok"]
        return {str(f.relative_to(repo)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

    before = state()
    # By hand: ana's experiment, and a param that reruns preprocess.
    set_params(repo, mlflow__experiment="cifar10-activations-ana", data__val_size=60)
    before["params.yaml"] = state()["params.yaml"]
    result = subprocess.run(
        ["dvc", "repro", "preprocess"], cwd=repo, env=ben, capture_output=True, text=True
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    ours = [line for line in output.splitlines() if line.startswith("error: ")]
    assert ours == [
        f"error: ben has READ on the experiment 'cifar10-activations-ana' on {server}, and "
        "logging runs needs EDIT or MANAGE; set mlflow.experiment in params.yaml to an "
        "experiment of yours (or ask its owner for EDIT), nothing was run"
    ], output
    assert "ERROR: failed to reproduce 'check_params'" in output, output
    assert "Running stage 'preprocess'" not in output and "Traceback" not in output
    assert "Warning" not in output, output
    assert state() == before  # dvc.lock and every output as they were
    # The student's command finds ben's own experiment again, whatever params.yaml says.
    with pytest.MonkeyPatch.context() as patch:
        as_user(patch, server, "ben", passwords["ben"])
        assert assignment(server, "ben", "cifar10-activations-ana")[0] == "cifar10-activations-ben"
    with pytest.MonkeyPatch.context() as patch:
        teacher = as_user(patch, server, "teacher", TEACHER_PASSWORD)
        ana = teacher.get_experiment_by_name("cifar10-activations-ana").experiment_id
        assert teacher.search_runs([ana]) == []  # nothing reached ana's experiment
