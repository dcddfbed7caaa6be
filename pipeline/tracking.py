"""A stage's MLflow run: opened with its params and tags, ended with an honest status (KILLED
when a stop signal, turned into an exception by pipeline.cli, ends it), and what it logs.

Nothing here runs at import time; `stage_run` sets the tracking URI when a stage starts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow

# What a stage logs to its run, in MLflow's own calls: the stages reach MLflow through here.
from mlflow import log_artifact as log_artifact
from mlflow import log_artifacts as log_artifacts
from mlflow import log_dict as log_dict
from mlflow import log_metric as log_metric
from mlflow import log_metrics as log_metrics
from mlflow import log_param as log_param
from mlflow import log_params as log_params
from mlflow import set_tag as set_tag
from mlflow.entities import Metric, RunStatus

from pipeline import outage, store
from pipeline.errors import PipelineError
from pipeline.store import tracking_uri

# Seconds between samples of CPU and memory in runs that record them (MLflow's default is 10,
# longer than a whole training on small data).
SYSTEM_METRICS_INTERVAL_S = 2


def _reach(uri: str) -> None:
    """Before a server is used: its client's retries (the outage rules), and one health check."""
    if uri.startswith(("http://", "https://")):
        outage.use_client_defaults()
        store.check_server(uri)


def git_commit(root: Path) -> str:
    """The commit the code was run at, or "unknown" outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def check_can_log(experiment: str) -> None:
    """Stop, in one line, an account that may not log runs to `experiment` on the tracking
    server. The check_params stage calls this: DVC runs it first, so a refusal there leaves
    dvc.lock and every output as they were, where a refused later stage would find its outputs
    already deleted by DVC and the stages before it already recorded. An experiment that does
    not exist yet passes: any account may create one."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    _reach(uri)
    try:
        found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
        held = None if found is None else store.account_permission(uri, found.experiment_id)
    except Exception as exc:
        raise PipelineError(store.store_error(uri, exc)) from None
    if held is not None and held[1] not in store.LOGGING_PERMISSIONS:
        account, permission = held
        raise PipelineError(
            f"{account} has {permission} on the experiment {experiment!r} on {uri}, and logging "
            "runs needs EDIT or MANAGE; set mlflow.experiment in params.yaml to an experiment "
            "of yours (or ask its owner for EDIT), nothing was run"
        )


def stage_tags(stage: str, activation: str | None = None) -> dict[str, str]:
    """Tags that let a run be found by stage, activation, commit and DVC experiment.

    No local path: a run on a shared server must not reveal (or depend on) this machine's folders.
    """
    tags = {
        "stage": stage,
        "git_commit": git_commit(Path.cwd()),
        # MLflow would record the script's absolute path here.
        "mlflow.source.name": _relative_source(sys.argv[0]),
    }
    if activation:
        tags["activation"] = activation
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("PIPELINE_STUDY"):  # set by pipeline.cluster for its tasks
        tags["study"] = os.environ["PIPELINE_STUDY"]
    return tags


def _relative_source(script: str) -> str:
    """`pipeline/train.py` for a script inside the working directory, else its file name."""
    path = Path(script).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


@contextlib.contextmanager
def stage_run(
    stage: str,
    experiment: str,
    params: Mapping[str, Any],
    activation: str | None = None,
    tags: Mapping[str, str] | None = None,
    system_metrics: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """Open the stage's MLflow run, log its params, and end it FINISHED, KILLED or FAILED.

    With `system_metrics`, MLflow samples the machine's CPU and memory into the run (`system/…`).
    """
    uri = tracking_uri()
    _reach(uri)
    mlflow.set_tracking_uri(uri)
    try:
        with store.store_lock(uri), store.says_nothing():
            experiment_id = store.ensure_experiment(experiment)
            reaped = store.reap_dead_runs(experiment_id)
    except Exception as exc:
        raise PipelineError(store.store_error(uri, exc)) from None
    if reaped:
        print(
            f"note: marked KILLED {len(reaped)} run(s) whose process had died: {', '.join(reaped)}",
            file=sys.stderr,
        )
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
        mlflow.set_system_metrics_samples_before_logging(1)
    try:
        with store.says_nothing():
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=stage,
                tags=stage_tags(stage, activation) | store.process_tags() | dict(tags or {}),
                log_system_metrics=system_metrics,
            )
    except Exception as exc:
        raise PipelineError(store.store_error(uri, exc)) from None
    with _ending_honestly(run):
        mlflow.log_params(dict(params))
        yield run


@contextlib.contextmanager
def _ending_honestly(run: mlflow.ActiveRun) -> Iterator[None]:
    """End `run` FINISHED on success, KILLED on an interrupt, FAILED on any other exception."""
    try:
        yield
    except outage.TrackingOutage:
        outage.one_quick_attempt()
        with contextlib.suppress(Exception):
            mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except BaseException:
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def log_curve(key: str, steps: Sequence[int], values: Sequence[float]) -> None:
    """One metric's whole curve in one request to the store, to the active run."""
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now, int(s)) for s, v in zip(steps, values, strict=True)]
    mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics)
