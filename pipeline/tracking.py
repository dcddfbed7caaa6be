"""MLflow: one run per stage execution, always ended with an honest status (KILLED when a stop
signal, turned into an exception by pipeline.cli, ends it).

Nothing here runs at import time; `stage_run` sets the tracking URI when a stage starts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import filelock
import mlflow
import psutil
from mlflow.entities import Metric, RunStatus

from pipeline.errors import PipelineError
from pipeline.files import sha256_file

# How long a request to a server that stopped answering is retried: urllib3 waits 0, 2f, 4f, …,
# f·2^(R-1) s between R retries (f the backoff factor), about f·(2^R − 2) s in all: 126 s here,
# so an outage of up to 2 minutes (a restart, a dropped connection) loses nothing. MLflow's own
# defaults (f = 2, 120 s per request) wait over 4 minutes. Users can override each.
HTTP_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
# MLflow stores a dataset digest in at most 36 characters; 32 hex digits are 128 bits.
DIGEST_LENGTH = 32
# Seconds between samples of CPU and memory in runs that record them (MLflow's default is 10,
# longer than a whole training on small data).
SYSTEM_METRICS_INTERVAL_S = 2
# Seconds a tracking server gets to answer its health check before the stage gives up.
HEALTH_TIMEOUT_S = 10
# MLflow's basic-auth REST routes (GET_CURRENT_USER, GET_USER_PERMISSION in
# mlflow.server.auth.routes), by path: importing that module loads the whole server.
CURRENT_USER_PATH = "/api/2.0/mlflow/users/current"
USER_PERMISSION_PATH = "/api/3.0/mlflow/users/permissions/get"
# The permissions that let an account log runs to an experiment (MLflow's can_update).
LOGGING_PERMISSIONS = frozenset({"EDIT", "MANAGE"})


class TrackingOutage(PipelineError):
    """The tracking server stopped answering and MLflow's retries were spent."""

    exit_at_once = True  # MLflow's threads may still be retrying other requests


def retry_window() -> float:
    """Seconds MLflow's HTTP client retries one request to a server that stopped answering:
    f·(2^R − 2) for R retries and backoff factor f (126 s with the stages' defaults)."""
    retries = int(os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7"))
    factor = float(os.environ.get("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"))
    return max(factor * (2**retries - 2), 1.0)


class Watchdog:
    """Ends the process with one error line when nothing progresses for `window` seconds.

    MLflow's retries apply per request: with the server gone, every batch still queued would
    wait them out in turn, so after training the stage as a whole gets one window. The process
    exits at once (MLflow's retrying threads would hold up a normal exit just as long).
    """

    def __init__(self, window: float, describe: Callable[[], str]) -> None:
        self.window = window
        self.describe = describe
        self._last = time.monotonic()
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="logging-watchdog").start()

    def progress(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            if time.monotonic() - self._last > self.window:
                print(f"error: {self.describe()}", file=sys.stderr, flush=True)
                sys.stdout.flush()
                os._exit(1)


class LostMetrics(Exception):
    """Metrics sent in the background that did not reach the server, even when sent again."""

    def __init__(self, steps: Sequence[int], cause: Exception) -> None:
        super().__init__(f"{describe_steps(steps)}: {cause}")
        self.what = f"the metrics of {describe_steps(steps)}"


def repo_root() -> Path:
    """The main repository, even when DVC runs a queued experiment in a temporary copy.

    DVC sets DVC_ROOT to the main repository for every stage command, including those of
    experiments it runs under .dvc/tmp/exps/; outside DVC the stages run from the root.
    """
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else an SQLite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps artifacts: beside an SQLite store; a server decides its own."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.parent / "mlartifacts" / experiment).resolve().as_uri()


def git_commit(root: Path) -> str:
    """The commit the code was run at, or "unknown" outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def check_server(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """Fail at once, naming the URI, when a tracking server does not answer its health check or
    presents a certificate the client cannot verify. The check verifies as MLflow's client does
    (MLFLOW_TRACKING_SERVER_CERT_PATH, MLFLOW_TRACKING_INSECURE_TLS) but once, without the
    retries that would spend minutes on a certificate that will never verify."""
    import requests
    from mlflow.utils.credentials import get_default_host_creds

    creds = get_default_host_creds(uri)
    if isinstance(creds.verify, str) and not Path(creds.verify).is_file():
        raise PipelineError(
            f"MLFLOW_TRACKING_SERVER_CERT_PATH is {creds.verify}, which is not a file; set it to "
            "the path of the server's certificate, nothing was run"
        )
    try:
        requests.get(
            uri.rstrip("/") + "/health",
            timeout=timeout,
            verify=creds.verify,
            cert=creds.client_cert_path,
        )
    except requests.RequestException as exc:
        problem = certificate_problem(uri, creds.verify, exc)
        if problem is None:
            reason = list(_chain(exc))[-1]  # the socket's own error, not urllib3's wrapping
            problem = (
                f"the MLflow tracking server {uri} cannot be reached ({reason}); start it or fix "
                "MLFLOW_TRACKING_URI, nothing was run"
            )
        raise PipelineError(problem) from None
    # Any answer (a 401 behind authentication, too) means it is reachable.


# OpenSSL's verify codes (ssl.SSLCertVerificationError.verify_code) for a certificate that is
# valid but made out to another host name or address.
HOST_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def certificate_problem(uri: str, verify: bool | str, exc: BaseException) -> str | None:
    """One line for a server whose certificate the client could not verify, naming the fix;
    None when the failure was something else."""
    import ssl

    failed = next((e for e in _chain(exc) if isinstance(e, ssl.SSLCertVerificationError)), None)
    if failed is None:
        return None
    why = failed.verify_message
    if failed.verify_code in HOST_MISMATCH:
        host = urllib.parse.urlsplit(uri).hostname
        return (
            f"the certificate of the MLflow tracking server {uri} is not made out to {host} "
            f"({why}); set MLFLOW_TRACKING_URI to the name or address the certificate names "
            "(in a class, the address your teacher gave), nothing was run"
        )
    if isinstance(verify, str):
        return (
            f"the MLflow tracking server {uri} presents a certificate other than {verify} "
            f"({why}); ask whoever runs it (in a class, your teacher) for its certificate, "
            "class-cert.pem, and set MLFLOW_TRACKING_SERVER_CERT_PATH to it, nothing was run"
        )
    return (
        f"the MLflow tracking server {uri} presents a certificate this machine does not trust "
        f"({why}); ask whoever runs it (in a class, your teacher) for its certificate, "
        "class-cert.pem, and set MLFLOW_TRACKING_SERVER_CERT_PATH to it, nothing was run"
    )


def account_permission(uri: str, experiment_id: str) -> tuple[str, str] | None:
    """(the logged-in account, its permission on the experiment), as a basic-auth server
    resolves it for its own checks (MANAGE for an admin); None for a server without logins."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    creds = get_default_host_creds(uri)
    response = http_request(creds, CURRENT_USER_PATH, "GET")
    if response.status_code == 404:
        return None
    user = verify_rest_response(response, CURRENT_USER_PATH).json()["user"]
    if user["is_admin"]:
        return user["username"], "MANAGE"
    query = {"username": user["username"], "resource_type": "experiment"}
    response = http_request(
        creds, USER_PERMISSION_PATH, "GET", params=query | {"resource_id": experiment_id}
    )
    permission = verify_rest_response(response, USER_PERMISSION_PATH).json()["permission"]
    return user["username"], permission


def check_can_log(experiment: str) -> None:
    """Stop, in one line, an account that may not log runs to `experiment` on the tracking
    server. The check_params stage calls this: DVC runs it first, so a refusal there leaves
    dvc.lock and every output as they were, where a refused later stage would find its outputs
    already deleted by DVC and the stages before it already recorded. An experiment that does
    not exist yet passes: any account may create one."""
    uri = tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    for key, value in HTTP_CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    check_server(uri)
    try:
        found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
        held = None if found is None else account_permission(uri, found.experiment_id)
    except Exception as exc:
        raise PipelineError(store_error(uri, exc)) from None
    if held is not None and held[1] not in LOGGING_PERMISSIONS:
        account, permission = held
        raise PipelineError(
            f"{account} has {permission} on the experiment {experiment!r} on {uri}, and logging "
            "runs needs EDIT or MANAGE; set mlflow.experiment in params.yaml to an experiment "
            "of yours (or ask its owner for EDIT), nothing was run"
        )


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and every exception it was raised from or during."""
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


# SQLite's own error names (Python's sqlite3.Error.sqlite_errorname), by prefix, and what to do.
SQLITE_PROBLEMS = {
    "SQLITE_READONLY": "is read-only; make the file and its folder writable, or set "
    "MLFLOW_TRACKING_URI to a store you can write",
    "SQLITE_BUSY": "is locked by another process; let it finish (or stop it), or set "
    "MLFLOW_TRACKING_URI to another store",
    "SQLITE_LOCKED": "is locked by another process; let it finish (or stop it), or set "
    "MLFLOW_TRACKING_URI to another store",
    "SQLITE_CORRUPT": "is corrupt; move it aside (mv {path} {path}.broken) to start a new store, "
    "or restore it from a backup",
    "SQLITE_NOTADB": "is not an SQLite database; move it aside (mv {path} {path}.broken) to start "
    "a new store, or set MLFLOW_TRACKING_URI to the right one",
    "SQLITE_FULL": "is on a full disk; free some space there",
    "SQLITE_CANTOPEN": "cannot be opened; check that its folder exists and is writable",
    "SQLITE_IOERR": "could not be read or written (an I/O error); check the disk",
}


def sqlite_problem(uri: str, exc: BaseException) -> str | None:
    """One line for an SQLite store that refused, from the error SQLite itself reported (found
    in the exception's chain); None when the store is not SQLite or the cause is something else."""
    if not uri.startswith("sqlite:///"):
        return None
    # The store's lock file beside it fails first when its folder cannot be written.
    as_sqlite = {errno.EROFS: "SQLITE_READONLY", errno.EACCES: "SQLITE_READONLY"}
    as_sqlite |= {errno.EPERM: "SQLITE_READONLY", errno.ENOSPC: "SQLITE_FULL"}
    for seen in _chain(exc):
        name = getattr(seen, "sqlite_errorname", None) or ""
        if isinstance(seen, OSError):
            name = as_sqlite.get(seen.errno, name)
        for prefix, problem in SQLITE_PROBLEMS.items():
            if name.startswith(prefix):
                path = uri.removeprefix("sqlite:///")
                return f"the MLflow store {path} {problem.format(path=path)}; nothing was run"
    return None


def _error_code(exc: BaseException) -> str | None:
    """MLflow's error code (its name for the HTTP status) of the first MlflowException in the
    chain, e.g. UNAUTHENTICATED for 401 and PERMISSION_DENIED for 403."""
    for seen in _chain(exc):
        if isinstance(seen, mlflow.exceptions.MlflowException):
            return seen.error_code
    return None


def _rejects_host(exc: BaseException) -> bool:
    """A 403 from MLflow's DNS-rebinding guard (its own message constant), not from auth."""
    from mlflow.server.security_utils import INVALID_HOST_MSG

    return any(INVALID_HOST_MSG in str(seen) for seen in _chain(exc))


def store_error(uri: str, exc: Exception) -> str:
    """One line naming why the store refused and the fix: a server that answers /health can
    still reject the client's Host header (403, fixed on the server) or its credentials."""
    if (problem := sqlite_problem(uri, exc)) is not None:
        return problem
    code = _error_code(exc)
    if code == "PERMISSION_DENIED" and _rejects_host(exc):
        host = urllib.parse.urlsplit(uri).netloc
        return (
            f"the MLflow tracking server {uri} rejects the Host header {host!r} (403 Invalid Host "
            f"header); start the server with --allowed-hosts including {host}, nothing was run"
        )
    if code == "UNAUTHENTICATED":
        return (
            f"the MLflow tracking server {uri} asks for credentials (401); set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, nothing was run"
        )
    if code == "PERMISSION_DENIED":
        return (
            f"the MLflow tracking server {uri} refused this user (403); check "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD and the user's permissions on "
            "the experiment, nothing was run"
        )
    first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
    return (
        f"cannot use the MLflow tracking store {uri} ({first_line}); "
        "check that it is running and MLFLOW_TRACKING_URI"
    )


def is_outage(exc: BaseException) -> bool:
    """True when `exc` means the server did not answer (after MLflow's retries), not a refusal:
    MLflow raises its own exception from (or while handling) the requests/urllib3 one."""
    import requests
    import urllib3

    unanswered = (
        LostMetrics,
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
        urllib3.exceptions.MaxRetryError,
    )
    return any(isinstance(seen, unanswered) for seen in _chain(exc))


def describe_steps(steps: Sequence[int]) -> str:
    """[0] → "epoch 0"; [3, 4, 5] → "epochs 3–5"; [2, 5] → "epochs 2, 5"."""
    steps = sorted(set(steps))
    if len(steps) == 1:
        return f"epoch {steps[0]}"
    if steps == list(range(steps[0], steps[-1] + 1)):
        return f"epochs {steps[0]}–{steps[-1]}"
    return "epochs " + ", ".join(map(str, steps))


class BackgroundMetrics:
    """Per-epoch metrics sent by one background thread, so training never waits on the server;
    `settle()` after training waits for them and sends again, waiting, any batch that failed.

    Our own thread rather than MLflow's asynchronous logging: its futures report failures as one
    summary exception that drops the cause, and the cause tells an outage from a refusal.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._client = mlflow.MlflowClient()
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self._sent: list[tuple[int, dict[str, float], concurrent.futures.Future]] = []
        self._confirmed: set[int] = set()

    def _send(self, step: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._client.log_batch(self.run_id, metrics=batch)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        metrics = dict(metrics)
        self._sent.append((step, metrics, self._sender.submit(self._send, step, metrics)))

    def unconfirmed(self) -> str:
        """'the metrics of epochs 3–20': what has not been seen to reach the server."""
        steps = sorted({s for s, _, _ in self._sent} - self._confirmed)
        return f"the metrics of {describe_steps(steps)}" if steps else "no epoch metrics"

    def settle(self, progress: Callable[[], None] = lambda: None) -> None:
        """Wait for every batch; send again, waiting, each that failed. `progress` is called
        whenever a batch is confirmed."""
        self._confirmed = set()
        failed = []
        for step, metrics, future in self._sent:
            if (exc := future.exception()) is None:
                self._confirmed.add(step)
                progress()
            elif is_outage(exc):
                failed.append((step, metrics))
            else:
                raise exc
        self._sender.shutdown()
        for i, (step, metrics) in enumerate(failed):
            try:
                self._send(step, metrics)
                self._confirmed.add(step)
                progress()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                raise LostMetrics(sorted({s for s, _ in failed[i:]}), exc) from None


def log_curve(key: str, steps: Sequence[int], values: Sequence[float]) -> None:
    """One metric's whole curve in one request to the store, to the active run."""
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now, int(s)) for s, v in zip(steps, values, strict=True)]
    mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics)


Step = tuple[str, Callable[[], Any]]


def record(
    stage: str,
    steps: Sequence[Step],
    *,
    system_metrics: bool = False,
    background: BackgroundMetrics | None = None,
    uri: str | None = None,
) -> list[Any]:
    """Log what a stage computed: run the named steps in order (first settling `background`'s
    metrics, when given) and return their results. Every stage records this way, after its
    outputs are written, so a tracking outage never throws them away: when the server is gone
    for longer than MLflow's retries last, or nothing reaches it for that long in all, the stage
    stops with one line naming the URI and every step not logged."""
    uri = uri or tracking_uri()
    window = retry_window()
    current = 0

    def outage(lost_now: str, reason: str) -> str:
        lost = [lost_now] + [name for name, _ in steps[current + 1 :]]
        if system_metrics:
            # MLflow's sampler stops for good once the server fails to answer it.
            lost.append("system metrics from the outage on")
        return (
            f"the MLflow tracking server {uri} stopped answering and {reason}; not logged: "
            f"{'; '.join(lost)}. {stage} finished and wrote its outputs, but DVC did not "
            f"record them: rerun `dvc repro {stage}` once the server answers"
        )

    if background is not None:
        steps = [("the epoch metrics", background.settle), *steps]

    def what_now() -> str:
        if current == 0 and background is not None:
            return background.unconfirmed()
        return steps[current][0]

    watchdog = Watchdog(
        window,
        lambda: outage(
            what_now(),
            f"nothing reached it for {window:.0f} s after {stage} finished (the window set by "
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR)",
        ),
    )
    results = []
    try:
        for current, (what, step) in enumerate(steps):  # `current` is read by the watchdog
            try:
                if current == 0 and background is not None:
                    step(watchdog.progress)
                else:
                    results.append(step())
                watchdog.progress()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                reason = (
                    "MLflow's retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES, "
                    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR) ran out"
                )
                raise TrackingOutage(outage(getattr(exc, "what", what), reason)) from None
    finally:
        watchdog.stop()
    return results


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise first contact with an SQLite store across processes (parallel stages or queued
    experiments), so two never create its tables or the same experiment at once."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(uri.removeprefix("sqlite:///") + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(lock_path):
        yield


def ensure_experiment(name: str) -> str:
    """Return the id of experiment `name`, creating it (artifacts beside an SQLite store)."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = _artifact_location(mlflow.get_tracking_uri(), name)
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another stage created it between our lookup and create.
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def process_tags() -> dict[str, str]:
    """What tells this run's process from any other, now or later: host, pid and start time
    (a pid alone is reused once its process is gone)."""
    me = psutil.Process()
    return {
        "process.host": socket.gethostname(),
        "process.pid": str(me.pid),
        "process.started": f"{me.create_time():.2f}",
    }


def process_alive(tags: Mapping[str, str]) -> bool | None:
    """Whether the process that opened a run still runs: None when it ran on another host (or
    before runs recorded it), where this machine cannot tell."""
    if tags.get("process.host") != socket.gethostname() or "process.pid" not in tags:
        return None
    try:
        started = psutil.Process(int(tags["process.pid"])).create_time()
    except psutil.NoSuchProcess:
        return False
    return abs(started - float(tags["process.started"])) < 1.0


def reap_dead_runs(experiment_id: str) -> list[str]:
    """Mark KILLED every RUNNING run of the experiment whose process on this host is gone (a
    SIGKILL, the OOM killer, a lost terminal leave no chance to say so); return their names.
    Live runs, and runs of other hosts, are left as they are."""
    client = mlflow.MlflowClient()
    running = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    reaped = []
    for run in running:
        if process_alive(run.data.tags) is False:
            mark_killed(run.info.run_id, "its process had ended unannounced")
            reaped.append(run.info.run_name)
    return reaped


def mark_killed(run_id: str, why: str) -> None:
    """End a run that cannot end itself KILLED, saying why in its `process.reaped` tag."""
    client = mlflow.MlflowClient()
    client.set_tag(run_id, "process.reaped", why)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))


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
def _store_says_nothing() -> Iterator[None]:
    """MLflow logs a refusing SQL store's error with its traceback before raising it; the stage
    says it in one line instead (store_error), so that log is held back."""
    log = logging.getLogger("mlflow.store.db.utils")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


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
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_CLIENT_DEFAULTS.items():
            os.environ.setdefault(key, value)
        check_server(uri)
    mlflow.set_tracking_uri(uri)
    try:
        with store_lock(uri), _store_says_nothing():
            experiment_id = ensure_experiment(experiment)
            reaped = reap_dead_runs(experiment_id)
    except Exception as exc:
        raise PipelineError(store_error(uri, exc)) from None
    if reaped:
        print(
            f"note: marked KILLED {len(reaped)} run(s) whose process had died: {', '.join(reaped)}",
            file=sys.stderr,
        )
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
        mlflow.set_system_metrics_samples_before_logging(1)
    try:
        with _store_says_nothing():
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=stage,
                tags=stage_tags(stage, activation) | process_tags() | dict(tags or {}),
                log_system_metrics=system_metrics,
            )
    except Exception as exc:
        raise PipelineError(store_error(uri, exc)) from None
    with _ending_honestly(run):
        mlflow.log_params(dict(params))
        yield run


def log_split(
    name: str, context: str, images: Any, labels: Any, source: str, split_file: Path
) -> None:
    """Log a data split as the run's input: the runs table's Dataset column names it.

    The digest comes from the split file's own sha256: MLflow's default hashes only the first
    10,000 array values (about three images). The source is `data.url` as given.
    """
    from mlflow.data import from_numpy

    digest = sha256_file(split_file)[:DIGEST_LENGTH]
    with warnings.catch_warnings():
        # MLflow registers its local-file source twice and warns that a path matches both.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        dataset = from_numpy(images, targets=labels, source=source, name=name, digest=digest)
    try:
        mlflow.log_input(dataset, context=context)
    except mlflow.exceptions.MlflowException:
        # A store checks for the dataset, then inserts it: two stages logging the same split at
        # once can both insert, and one is refused. The dataset now exists, so a second try
        # links it; any other refusal is refused again and raised.
        mlflow.log_input(dataset, context=context)


@contextlib.contextmanager
def _ending_honestly(run: mlflow.ActiveRun) -> Iterator[None]:
    """End `run` FINISHED on success, KILLED on an interrupt, FAILED on any other exception."""
    try:
        yield
    except TrackingOutage:
        # One quick attempt: MLflow's retries were just spent on this server, and its exit hook
        # would otherwise spend them again.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
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
