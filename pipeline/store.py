"""The MLflow store: where it is, reaching it, and why it refused (one line naming the fix);
its experiments, the datasets runs log, and the reaping of runs whose process died.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import filelock
import mlflow
import psutil
from mlflow.entities import RunStatus

from pipeline.errors import PipelineError, causes
from pipeline.files import sha256_file

# MLflow stores a dataset digest in at most 36 characters; 32 hex digits are 128 bits.
DIGEST_LENGTH = 32
# Seconds a tracking server gets to answer its health check before the stage gives up.
HEALTH_TIMEOUT_S = 10
# MLflow's basic-auth REST routes (GET_CURRENT_USER, GET_USER_PERMISSION in
# mlflow.server.auth.routes), by path: importing that module loads the whole server.
CURRENT_USER_PATH = "/api/2.0/mlflow/users/current"
USER_PERMISSION_PATH = "/api/3.0/mlflow/users/permissions/get"
# The permissions that let an account log runs to an experiment (MLflow's can_update).
LOGGING_PERMISSIONS = frozenset({"EDIT", "MANAGE"})


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
            reason = list(causes(exc))[-1]  # the socket's own error, not urllib3's wrapping
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

    failed = next((e for e in causes(exc) if isinstance(e, ssl.SSLCertVerificationError)), None)
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
    for seen in causes(exc):
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
    for seen in causes(exc):
        if isinstance(seen, mlflow.exceptions.MlflowException):
            return seen.error_code
    return None


def _rejects_host(exc: BaseException) -> bool:
    """A 403 from MLflow's DNS-rebinding guard (its own message constant), not from auth."""
    from mlflow.server.security_utils import INVALID_HOST_MSG

    return any(INVALID_HOST_MSG in str(seen) for seen in causes(exc))


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


def reap_study_runs(study: str, why: str) -> list[str]:
    """Mark KILLED, saying why, every RUNNING run of any experiment tagged with `study`; return
    their names."""
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    found = client.search_runs(
        experiments,
        f"tags.study = '{study}' AND attributes.status = 'RUNNING'",
        max_results=1000,
    )
    for run in found:
        mark_killed(run.info.run_id, why)
    return [r.info.run_name for r in found]


@contextlib.contextmanager
def says_nothing() -> Iterator[None]:
    """MLflow logs a refusing SQL store's error with its traceback before raising it; the stage
    says it in one line instead (store_error), so that log is held back."""
    log = logging.getLogger("mlflow.store.db.utils")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


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
