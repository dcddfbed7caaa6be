import hashlib
import json
import os
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipeline import outage, store, tracking


def finished_runs(name="exp"):
    return mlflow.search_runs(experiment_names=[name], output_format="list")


def test_default_uri_is_sqlite_at_dvc_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert store.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_env_uri_wins(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store.tracking_uri() == "http://127.0.0.1:5000"


def test_successful_stage_is_finished_with_params_and_tags(monkeypatch, tmp_path):
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-toad")
    with tracking.stage_run("train_relu", "exp", {"train.epochs": 3}, activation="relu"):
        mlflow.log_metric("val_accuracy", 0.5, step=1)
    (run,) = finished_runs()
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "train_relu"
    assert run.data.params == {"train.epochs": "3"}
    assert run.data.tags["stage"] == "train_relu"
    assert run.data.tags["activation"] == "relu"
    assert run.data.tags["dvc_experiment"] == "brisk-toad"
    assert "git_commit" in run.data.tags


def test_artifacts_live_beside_the_sqlite_store(isolated_tracking):
    with tracking.stage_run("report", "exp", {}):
        pass
    (run,) = finished_runs()
    db = Path(isolated_tracking.removeprefix("sqlite:///"))
    assert run.info.artifact_uri.startswith((db.parent / "mlartifacts").as_uri())


def test_failure_marks_the_run_failed():
    with pytest.raises(RuntimeError), tracking.stage_run("evaluate", "exp", {}):
        raise RuntimeError("boom")
    (run,) = finished_runs()
    assert run.info.status == "FAILED"


def test_unreachable_server_is_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with (
        pytest.raises(tracking.PipelineError, match=r"http://127\.0\.0\.1:9 cannot be reached"),
        tracking.stage_run("download", "exp", {}),
    ):
        pass


def test_a_server_that_never_answers_gets_one_health_check_and_nothing_runs(monkeypatch):
    """What the stage decides for a server that accepts and never answers: one request to
    /health, given HEALTH_TIMEOUT_S, then one line; MLflow's retries are never entered."""
    import requests

    asked = []

    def silent(url, timeout, **verification):
        asked.append((url, timeout))
        raise requests.exceptions.ReadTimeout("timed out")  # a read from a silent socket

    monkeypatch.setattr(requests, "get", silent)
    monkeypatch.setattr(mlflow, "set_tracking_uri", lambda uri: pytest.fail("MLflow was used"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with (
        pytest.raises(tracking.PipelineError) as raised,
        tracking.stage_run("train_relu@42", "exp", {}),
    ):
        pytest.fail("the stage ran")
    assert asked == [("http://127.0.0.1:9/health", store.HEALTH_TIMEOUT_S)]
    assert str(raised.value) == (
        "the MLflow tracking server http://127.0.0.1:9 cannot be reached (timed out); start it "
        "or fix MLFLOW_TRACKING_URI, nothing was run"
    )


def test_stage_run_carries_extra_tags_and_no_local_path(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    with tracking.stage_run("train_relu@7", "exp", {}, activation="relu", tags={"seed": "7"}):
        mlflow.log_metric("val_accuracy", 0.5, step=1)
    (run,) = finished_runs()
    assert run.data.tags["seed"] == "7" and run.data.tags["activation"] == "relu"
    assert run.data.tags["stage"] == "train_relu@7"
    values = [*run.data.tags.values(), *run.data.params.values()]
    assert not [v for v in values if str(tmp_path) in v or v.startswith("/")]


def test_logged_splits_carry_the_files_digest_and_the_source_as_given(tmp_path):
    digests = {}
    with tracking.stage_run("train_relu@1", "exp", {}):
        for name, fill in (("a", 0), ("b", 1)):
            images = np.full((4, 2), fill, dtype=np.uint8)
            path = tmp_path / f"{name}.npz"
            np.savez(path, images=images)
            store.log_split(name, "training", images, np.zeros(4), "../data/x.tar.gz", path)
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:32]
    (run,) = finished_runs()
    logged = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    assert {n: d.digest for n, d in logged.items()} == digests
    assert digests["a"] != digests["b"]
    assert json.loads(logged["a"].source)["uri"] == "../data/x.tar.gz"


@pytest.mark.parametrize(
    ("status", "body", "names"),
    [
        (
            403,
            "Invalid Host header - possible DNS rebinding attack detected",
            "--allowed-hosts including tracking-host:8080",
        ),
        (
            401,
            "You are not authenticated.",
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD",
        ),
        (403, "Permission denied", "the user's permissions"),
        (500, "Internal error", "check that it is running"),
    ],
)
def test_a_refusing_server_gets_an_error_that_names_the_fix(status, body, names):
    """As MLflow's REST client raises a non-JSON refusal: its error code from the status."""
    refused = mlflow.exceptions.MlflowException(
        f"API request to endpoint /api/2.0/mlflow/runs/create failed with error code {status} "
        f"!= 200. Response body: '{body}'",
        error_code=mlflow.exceptions.get_error_code(status),
    )
    message = store.store_error("http://tracking-host:8080", refused)
    assert names in message and "\n" not in message


def test_the_status_decides_not_the_words():
    """A message that merely mentions 401 is not a credentials problem."""
    message = store.store_error("http://h:1", ValueError("error code 401 UNAUTHENTICATED"))
    assert "MLFLOW_TRACKING_USERNAME" not in message


@pytest.mark.parametrize(
    ("steps", "text"),
    [([0], "epoch 0"), ([5, 3, 4, 4], "epochs 3–5"), ([2, 5, 2], "epochs 2, 5")],
)
def test_describe_steps(steps, text):
    assert outage.describe_steps(steps) == text


def _raised_from(cause: BaseException, message: str) -> mlflow.exceptions.MlflowException:
    """An MlflowException raised while handling `cause`, as MLflow's REST client does."""
    try:
        raise cause
    except type(cause):
        try:
            raise mlflow.exceptions.MlflowException(message)
        except mlflow.exceptions.MlflowException as exc:
            return exc


def test_only_a_server_that_does_not_answer_is_an_outage():
    import requests

    assert outage.is_outage(_raised_from(requests.exceptions.ConnectionError("refused"), "x"))
    assert outage.is_outage(_raised_from(requests.exceptions.ReadTimeout("slow"), "x"))
    assert outage.is_outage(requests.exceptions.ConnectionError("refused"))
    # The words alone decide nothing: a refusal stays a refusal whatever it says.
    assert not outage.is_outage(mlflow.exceptions.MlflowException("Max retries exceeded"))
    assert not outage.is_outage(mlflow.exceptions.MlflowException("RESOURCE_DOES_NOT_EXIST"))
    assert not outage.is_outage(ValueError("a bug"))


def test_background_metrics_land_in_the_run():
    with tracking.stage_run("train_relu", "exp", {}) as run:
        background = outage.BackgroundMetrics(run.info.run_id)
        for step in range(3):
            background.log(step, {"val_accuracy": step / 10})
        background.wait_and_resend()
        run_id = mlflow.active_run().info.run_id
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.0), (1, 0.1), (2, 0.2)]


def test_record_returns_what_each_step_returned():
    steps = [("first", lambda: 1), ("second", lambda: None), ("third", lambda: "three")]
    assert outage.run_logging_steps("evaluate", steps, uri="http://h:1") == [1, None, "three"]


def test_an_outage_after_training_names_every_step_not_logged():
    import requests

    def gone():
        raise _raised_from(requests.exceptions.ConnectionError("refused"), "API request failed")

    done = []
    steps = [("first", lambda: done.append(1)), ("second", gone), ("third", lambda: done.append(3))]
    with pytest.raises(outage.TrackingOutage) as error:
        outage.run_logging_steps("train_relu@42", steps, uri="http://h:1")
    assert done == [1]
    assert "http://h:1" in str(error.value) and "not logged: second; third." in str(error.value)
    with pytest.raises(ValueError):
        outage.run_logging_steps("s", [("x", lambda: int("x"))], uri="http://h:1")


def test_a_dataset_two_stages_log_at_once_is_linked_on_the_second_try(monkeypatch, tmp_path):
    """The error a PostgreSQL-backed server gave (test_team_server) when two queued experiments
    logged the same test split at once; the dataset exists by then, so one retry links it."""
    real = mlflow.log_input
    calls = []

    def racing(dataset, context=None):
        calls.append(context)
        if len(calls) == 1:
            raise mlflow.exceptions.MlflowException(
                "BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates "
                'unique constraint "dataset_pk"'
            )
        return real(dataset, context=context)

    monkeypatch.setattr(mlflow, "log_input", racing)
    split = tmp_path / "test.npz"
    split.write_bytes(b"x")
    images, labels = np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64)
    with tracking.stage_run("evaluate", "exp", {}):
        store.log_split("cifar10-test", "testing", images, labels, "src", split)
        run_id = mlflow.active_run().info.run_id
    assert calls == ["testing", "testing"]
    (logged,) = mlflow.get_run(run_id).inputs.dataset_inputs
    assert logged.dataset.name == "cifar10-test"

    def refused(dataset, context=None):
        raise mlflow.exceptions.MlflowException("PERMISSION_DENIED")

    monkeypatch.setattr(mlflow, "log_input", refused)
    with (
        pytest.raises(mlflow.exceptions.MlflowException, match="PERMISSION_DENIED"),
        tracking.stage_run("evaluate", "exp", {}),
    ):
        store.log_split("cifar10-test", "testing", images, labels, "src", split)


WATCHED = """
import time
from pipeline import cli, outage

def main(argv):
    steps = [("the first", lambda: None), ("the stuck one", lambda: time.sleep(600)), ("the last", lambda: None)]
    outage.run_logging_steps("train_relu@42", steps, uri="http://h:1")

raise SystemExit(cli.run_cli(main))
"""


def test_logging_that_makes_no_progress_for_the_window_ends_the_stage_in_one_line():
    import subprocess
    import sys

    env = {
        **os.environ,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # a window of 1·(2² − 2) = 2 s
    }
    # The stuck step sleeps 600 s: this line, naming it and the 2 s window, can come only
    # from the watchdog ending the process (the timeout only keeps a hang from lasting).
    result = subprocess.run(
        [sys.executable, "-c", WATCHED], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: the MLflow tracking server http://h:1 stopped answering")
    assert "nothing reached it for 2 s after train_relu@42 finished" in line
    assert "not logged: the stuck one; the last." in line


def test_the_auth_routes_are_mlflows_own():
    """store names two routes of MLflow's basic-auth app by path (importing that app is slow)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.server.auth import routes

    assert store.CURRENT_USER_PATH == routes.GET_CURRENT_USER
    assert store.USER_PERMISSION_PATH == routes.GET_USER_PERMISSION


def test_a_local_store_needs_no_permission_check(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking.check_can_log("anyone-s-experiment")  # no server, no permissions: nothing to refuse
    assert not (tmp_path / "mlflow.db").exists()
