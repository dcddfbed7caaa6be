"""The pre-lab check: is this machine ready for a class on one server? One line per check.

    python -m pipeline.prelab student --server URL --user NAME [--data-url URL --sha256 HEX]
    python -m pipeline.prelab teacher --server URL --archive PATH --data-url URL

A student's check: Python, the installed packages, a short timing of the tutorial network that
estimates `make run` on this CPU, the class's server and their login, the class's archive (its
checksum), and the free disk `make run` needs. A teacher's: Python, the packages (with MLflow's
basic-auth server), the archive file and its checksum, the tracking server, the admin login,
the data server serving that file, and the disk the class's models take on the server.

The password comes from MLFLOW_TRACKING_PASSWORD or a prompt; --server and --user default to
MLFLOW_TRACKING_URI and MLFLOW_TRACKING_USERNAME. Each failure is one line naming the fix; the
exit status is 1 when any check failed. Only the standard library is imported up front, so a
missing install is reported as a failed check, not as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import getpass
import hashlib
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.prelab_checks import (
    Result,
    Speed,
    check_admin,
    check_archive_answer,
    check_digest,
    check_disk,
    check_health,
    check_packages,
    check_python,
    check_served,
    check_student_login,
    check_teacher_server,
    check_timing,
    disk_need,
    fail,
    locked_pins,
    run_plan,
    skip,
    summary,
)

# What `make install` must have left importable (dvc.repo: DVC's own machinery, not its stub).
IMPORTS = ("tensorflow", "keras", "mlflow", "dvc.repo")
TEACHER_IMPORTS = (*IMPORTS, "mlflow.server.auth")
# The canonical cifar-10-python.tar.gz (163 MB), for when the server does not say its size.
ARCHIVE_BYTES = 170_498_071
# Seconds of training the timing aims for, after its warm-up: the whole check stays near 20 s.
TIMING_BUDGET_S = 6.0
TIMEOUT_S = 10
CHUNK = 1 << 20
CLASS_SIZE = 30  # the docs' class: what the teacher's disk check plans for by default


# ---- measurements: the machine, the servers ------------------------------------------------


@contextlib.contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """Hides what C++ code writes to file descriptor 2: on Intel CPUs TensorFlow's import notes
    that oneDNN is on, whatever TF_CPP_MIN_LOG_LEVEL says. Python's own errors are caught."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_problems(modules: Sequence[str]) -> dict[str, str]:
    import importlib
    import warnings

    problems = {}
    with warnings.catch_warnings(), native_stderr_hidden():
        warnings.simplefilter("ignore")  # libraries' deprecation notes are not the student's
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as exc:  # an ImportError, or a broken package failing at import
                problems[module] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return problems


def lock_path() -> Path:
    """requirements-gpu.lock when `make install GPU=1` made this environment."""
    gpu = (Path(sys.prefix) / ".installed-gpu").exists()
    return Path("requirements-gpu.lock" if gpu else "requirements.lock")


def check_install(modules: Sequence[str]) -> tuple[Result, bool]:
    """The install's check, and whether `modules` import (the other checks need them)."""
    missing = import_problems(modules)
    if missing:
        return check_packages(missing, {}, {}), False
    lock = lock_path()
    if not lock.is_file():
        return fail("install", f"{lock} not found: run this check in the project's folder"), True
    pins = locked_pins(lock.read_text())
    installed = {}
    for name in pins:
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = None
    return check_packages({}, installed, pins), True


def measure_speed(params: Any, budget_s: float = TIMING_BUDGET_S) -> Speed:
    """Train the tutorial network on random images, as train does (same batch, same steps per
    call into TensorFlow), after a warm-up that builds its graph; then time validation. The
    model is saved once to measure the files a training leaves."""
    import numpy as np

    from pipeline.cifar import IMAGE_SHAPE, N_CLASSES
    from pipeline.model import build_cnn, compile_model, export_model
    from pipeline.train import one_hot

    plan = run_plan(params)
    batch, per_call = plan.batch_size, plan.batch_size * plan.steps_per_execution
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (per_call, *IMAGE_SHAPE), dtype=np.uint8)
    labels = one_hot(rng.integers(0, N_CLASSES, per_call))
    model = build_cnn("relu", params.model)
    compile_model(model, params.train.learning_rate, plan.steps_per_execution)
    start = time.perf_counter()
    model.fit(images, labels, batch_size=batch, epochs=1, verbose=0)  # builds the graph
    warm_up = time.perf_counter() - start
    calls = max(1, min(8, int(budget_s / warm_up)))
    start = time.perf_counter()
    model.fit(images, labels, batch_size=batch, epochs=calls, verbose=0)
    step_s = (time.perf_counter() - start) / (calls * plan.steps_per_execution)
    model.evaluate(images, labels, batch_size=batch, verbose=0)  # builds the graph
    start = time.perf_counter()
    model.evaluate(images, labels, batch_size=batch, verbose=0)
    image_s = (time.perf_counter() - start) / per_call
    return Speed(step_s, image_s, saved_bytes(model), saved_bytes(export_model(model)))


def saved_bytes(model: Any) -> int:
    """The size of `model` saved as a .keras file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.stat().st_size


def served_model_bytes(params: Any) -> int:
    """A model as a training logs it to MLflow (weights only: untrained is the same size)."""
    from pipeline.model import build_cnn, export_model

    return saved_bytes(export_model(build_cnn("relu", params.model)))


def port_free(port: int) -> bool:
    """Whether a server could listen on `port` here (as the docs start them, on every address)."""
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def get(url: str, **kwargs) -> tuple[int | None, Any]:
    """(status, response) of a GET, or (None, the reason) when nothing answered."""
    import requests

    try:
        response = requests.get(url, timeout=TIMEOUT_S, **kwargs)
    except requests.RequestException as exc:
        return None, reason(exc)
    return response.status_code, response


def reason(exc: Exception) -> str:
    """A short cause for a request that got no answer."""
    import requests

    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT_S} s"
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "No route to host"):
        if known in text:
            return known.lower()
    return type(exc).__name__


def health(server: str) -> tuple[int | None, str]:
    status, response = get(f"{server}/health")
    return status, (response if status is None else "")


def search_class_experiment(server: str, user: str, password: str) -> tuple[int, str, list]:
    """An authenticated REST call: the experiments tagged with the student's account."""
    import requests

    from pipeline.classroom_accounts import STUDENT_TAG

    response = requests.post(
        f"{server}/api/2.0/mlflow/experiments/search",
        json={"max_results": 10, "filter": f"tags.`{STUDENT_TAG}` = '{user}'"},
        auth=(user, password),
        timeout=TIMEOUT_S,
    )
    found = response.json().get("experiments", []) if response.status_code == 200 else []
    experiments = [
        {"name": e["name"], "tags": {t["key"]: t["value"] for t in e.get("tags", [])}}
        for e in found
    ]
    return response.status_code, response.text[:500], experiments


def hash_url(url: str) -> tuple[int | None, str]:
    """(status, sha256 of the body) of a GET of `url`, streamed; (None, reason) unanswered."""
    import requests

    try:
        with requests.get(url, stream=True, timeout=TIMEOUT_S) as response:
            if response.status_code != 200:
                return response.status_code, ""
            digest = hashlib.sha256()
            for chunk in response.iter_content(CHUNK):
                digest.update(chunk)
            return 200, digest.hexdigest()
    except requests.RequestException as exc:
        return None, reason(exc)


def content_length(url: str) -> tuple[int | None, int | None, str]:
    """(status, Content-Length, reason) of a HEAD of `url`."""
    import requests

    try:
        response = requests.head(url, allow_redirects=True, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        return None, None, reason(exc)
    length = response.headers.get("Content-Length")
    return response.status_code, int(length) if length and length.isdigit() else None, ""


# ---- the two checks ----------------------------------------------------------------------------


def password_for(user: str, server: str) -> str | None:
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if password is None and sys.stdin.isatty():
        password = getpass.getpass(f"password of {user} on {server}: ")
    return password


def server_url(value: str | None) -> str:
    if not value or not value.startswith(("http://", "https://")):
        raise PipelineError(
            "give the class's server as --server http://host:port (or set MLFLOW_TRACKING_URI)"
        )
    return value.rstrip("/")


@dataclass(frozen=True)
class Machine:
    """What the checks read of this machine, given so that a test can pose as another."""

    version_info: Sequence[int] = tuple(sys.version_info)
    free_bytes: Callable[[Path], int] = lambda folder: shutil.disk_usage(folder).free


def first_checks(
    modules: Sequence[str], rest: Sequence[str], report: Callable[[Result], None], machine: Machine
) -> bool:
    """Python and the install; False (the `rest` reported as not run) when the packages do not
    import: every other check needs them."""
    report(check_python(machine.version_info))
    install, importable = check_install(modules)
    report(install)
    for name in () if importable else rest:
        report(skip(name, "not checked: the packages do not import"))
    return importable


def student(args: argparse.Namespace, report: Callable[[Result], None], machine: Machine) -> None:
    server = server_url(args.server)
    user = args.user or os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not user:
        raise PipelineError("give your account as --user NAME (or set MLFLOW_TRACKING_USERNAME)")
    password = password_for(user, server)
    if password is None:
        raise PipelineError("set MLFLOW_TRACKING_PASSWORD to the password from your teacher")
    rest = ("speed", "server", "login", "archive", "disk")
    if not first_checks(IMPORTS, rest, report, machine):
        return
    from pipeline.cifar import CIFAR10
    from pipeline.classroom_accounts import SHA_TAG, URL_TAG
    from pipeline.manifest import cpu_model
    from pipeline.params import load_params

    params = load_params(args.params)
    plan = run_plan(params)
    speed = measure_speed(params)
    report(check_timing(plan, speed, cpu_model()))

    status, why = health(server)
    report(check_health(server, status, why))
    tags: dict[str, str] = {}
    if status != 200:
        report(skip("login", "not checked: the server did not answer"))
    else:
        code, body, experiments = search_class_experiment(server, user, password)
        report(check_student_login(server, user, code, body, experiments))
        tags = experiments[0]["tags"] if experiments else {}

    data_url = args.data_url or tags.get(URL_TAG)
    expected = args.sha256 or tags.get(SHA_TAG)
    archive_bytes = ARCHIVE_BYTES
    if not data_url or not expected:  # the server gives both to an accepted login
        report(skip("archive", "not checked: without a login, give --data-url and --sha256"))
    else:
        status, length, why = content_length(data_url)
        archive_bytes = length or ARCHIVE_BYTES
        found = check_archive_answer(data_url, status, why)
        if found is None:
            status, digest = hash_url(data_url)
            found = check_archive_answer(data_url, status, digest) or check_digest(
                data_url, digest, expected
            )
        report(found)

    folder = Path.cwd()
    need = disk_need(plan, archive_bytes, math.prod(CIFAR10.image_shape), speed)
    report(check_disk(folder, machine.free_bytes(folder), need, "`make run` writes"))


def teacher(args: argparse.Namespace, report: Callable[[Result], None], machine: Machine) -> None:
    server = server_url(args.server)
    user = args.user or os.environ.get("MLFLOW_TRACKING_USERNAME") or "teacher"
    rest = ("archive", "server", "login", "data", "disk")
    if not first_checks(TEACHER_IMPORTS, rest, report, machine):
        return
    from pipeline.files import sha256_file
    from pipeline.params import load_params

    params = load_params(args.params)
    archive = Path(args.archive)
    if not archive.is_file():
        report(fail("archive", f"{archive} not found: download the archive, or fix --archive"))
    else:
        expected = args.sha256 or params.data.sha256
        report(check_digest(str(archive), sha256_file(archive), expected, teacher=True))

    status, _ = health(server)
    port = urllib.parse.urlsplit(server).port or 80
    report(check_teacher_server(server, status, None if status == 200 else port_free(port)))
    if status != 200:
        report(skip("login", "not checked: the server did not answer"))
    else:
        password = password_for(user, server)
        if password is None:
            raise PipelineError("set MLFLOW_TRACKING_PASSWORD to the admin's password")
        code, response = get(
            f"{server}/api/2.0/mlflow/users/get", params={"username": user}, auth=(user, password)
        )
        body = response.text[:500] if code is not None else ""
        info = response.json().get("user", {}) if code == 200 else {}
        report(check_admin(server, user, code or 0, body, info))

    if not archive.is_file():
        report(skip("data", "not checked: the archive file is missing"))
    else:
        status, length, why = content_length(args.data_url)
        report(check_served(args.data_url, status, length, archive.stat().st_size, why))

    need = args.students * run_plan(params).models * served_model_bytes(params)
    folder = Path.cwd()
    what = f"the models of {args.students} students take"
    report(check_disk(folder, machine.free_bytes(folder), need, what))


def main(argv: Sequence[str] | None = None, machine: Machine = Machine()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, helped in (("student", "a student's machine"), ("teacher", "the teacher's")):
        command = commands.add_parser(name, help=f"check {helped}")
        command.add_argument(
            "--server",
            default=os.environ.get("MLFLOW_TRACKING_URI"),
            help="the class's tracking server, http://host:port (default: MLFLOW_TRACKING_URI)",
        )
        command.add_argument("--user", help="the account (default: MLFLOW_TRACKING_USERNAME)")
        command.add_argument("--sha256", help="the archive's sha256")
    student_parser, teacher_parser = commands.choices["student"], commands.choices["teacher"]
    student_parser.add_argument(
        "--data-url", help="where the class's archive is served (default: from the server)"
    )
    teacher_parser.add_argument("--archive", required=True, help="the archive file you serve")
    teacher_parser.add_argument("--data-url", required=True, help="its URL, as students use it")
    teacher_parser.add_argument(
        "--students", type=int, default=CLASS_SIZE, help=f"the class's size (default {CLASS_SIZE})"
    )
    args = parser.parse_args(argv)
    results: list[Result] = []

    def report(result: Result) -> None:
        results.append(result)
        print(result.line(), flush=True)

    {"student": student, "teacher": teacher}[args.command](args, report, machine)
    print(summary(results))
    return 1 if any(r.failed for r in results) else 0


def run(argv: Sequence[str] | None = None, machine: Machine = Machine()) -> int:
    """`main` with one-line errors: no traceback for a problem the user can fix."""
    try:
        return main(argv, machine)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # TensorFlow's start-up notes (oneDNN, CPU features) are not for this check's reader.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(run())
