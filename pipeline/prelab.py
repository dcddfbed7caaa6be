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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

MINIMUM_PYTHON = (3, 11)
# What `make install` must have left importable (dvc.repo: DVC's own machinery, not its stub).
IMPORTS = ("tensorflow", "keras", "mlflow", "dvc.repo")
TEACHER_IMPORTS = (*IMPORTS, "mlflow.server.auth")
# The canonical cifar-10-python.tar.gz (163 MB), for when the server does not say its size.
ARCHIVE_BYTES = 170_498_071
# DVC keeps each output twice: in the project and in its cache (a copy, unless the file
# system can reflink), so every output counts twice.
DVC_COPIES = 2
# Seconds of training the timing aims for, after its warm-up: the whole check stays near 20 s.
TIMING_BUDGET_S = 6.0
TIMEOUT_S = 10
CHUNK = 1 << 20
CLASS_SIZE = 30  # the docs' class: what the teacher's disk check plans for by default


@dataclass(frozen=True)
class Result:
    """One check: ok, failed (`detail` names the problem and the fix) or not run."""

    status: str  # "ok", "FAIL" or "skip"
    name: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<8}  {self.detail}"


def ok(name: str, detail: str) -> Result:
    return Result("ok", name, detail)


def fail(name: str, detail: str) -> Result:
    return Result("FAIL", name, detail)


def skip(name: str, detail: str) -> Result:
    return Result("skip", name, detail)


def summary(results: Sequence[Result]) -> str:
    failed = sum(r.failed for r in results)
    skipped = sum(r.status == "skip" for r in results)
    if not failed and not skipped:
        return f"all {len(results)} checks passed: this machine is ready for the lab"
    not_run = f", {skipped} not run" if skipped else ""
    return (
        f"{failed} of {len(results)} checks failed{not_run}: fix what each FAIL line says, "
        "then run this check again"
    )


def megabytes(size: float) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:,.0f} MB"


# ---- decisions: pure functions of what was measured ------------------------------------------


def check_python(version_info: Sequence[int]) -> Result:
    found = ".".join(map(str, version_info[:3]))
    wanted = ".".join(map(str, MINIMUM_PYTHON))
    if tuple(version_info[:2]) >= MINIMUM_PYTHON:
        return ok("python", f"Python {found} ({wanted} or newer is needed)")
    return fail(
        "python",
        f"Python {found} is too old: install Python {wanted} or newer, then rebuild the "
        f"environment with it: `make clean && make install PYTHON=python{wanted}`",
    )


def locked_pins(text: str, environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """Package → version of each `name==version` pin of a uv/pip lock whose marker holds here
    (or in `environment`, PEP 508's marker variables)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in text.splitlines():
        if not line[:1].isalnum() or "==" not in line:
            continue  # hashes, comments and `# via` lines are indented or start with #
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker is None or requirement.marker.evaluate(environment):
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def check_packages(
    missing: Mapping[str, str], installed: Mapping[str, str | None], pins: Mapping[str, str]
) -> Result:
    """`missing`: module → why it failed to import; `installed`: package → version (None when
    not installed) for every package `pins` names."""
    fix = "run `make install` in the project's folder, then `source .venv/bin/activate`"
    if missing:
        module, why = next(iter(missing.items()))
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return fail("install", f"cannot import {module}{more}: {why}; {fix}")
    wrong = {n: (v, installed.get(n)) for n, v in pins.items() if installed.get(n) != v}
    if wrong:
        shown = ", ".join(
            f"{n} {have or 'missing'} (lock: {want})" for n, (want, have) in wrong.items()
        )
        if len(shown) > 160:
            shown = shown[:157].rsplit(", ", 1)[0] + ", …"
        return fail(
            "install",
            f"{len(wrong)} package(s) differ from the lock: {shown}; {fix}",
        )
    return ok("install", f"{len(pins)} packages as pinned in the lock")


@dataclass(frozen=True)
class RunPlan:
    """What `make run` does, counted from params.yaml: trainings, steps and images."""

    models: int  # trainings: seeds × activations
    train_images: int
    validation_images: int
    test_images: int
    epochs: int
    batch_size: int
    step_curve_steps: int  # the first steps measured one call at a time
    step_curve_images: int
    steps_per_execution: int

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_images / self.batch_size)

    @property
    def step_curve_measurements(self) -> int:
        steps = min(self.step_curve_steps, self.steps_per_epoch * self.epochs)
        return 1 + math.ceil(steps / self.steps_per_execution)  # and one before training

    @property
    def forward_images(self) -> int:
        """Images one training and its evaluation pass forward only: validation every epoch,
        the step curve's measurements and the test set."""
        curve = self.step_curve_measurements * min(self.step_curve_images, self.validation_images)
        return self.validation_images * self.epochs + curve + self.test_images

    def processed_bytes(self, image_bytes: int) -> int:
        """The uint8 arrays preprocess writes (uncompressed .npz): each image and its label."""
        images = self.train_images + self.validation_images + self.test_images
        return images * (image_bytes + 1)


def run_plan(params: Any) -> RunPlan:
    from pipeline.cifar import CIFAR10
    from pipeline.train import STEP_CURVE_IMAGES, STEP_CURVE_STEPS, STEPS_PER_EXECUTION

    data, train = params.data, params.train
    remaining = CIFAR10.train_images - data.val_size
    return RunPlan(
        models=len(train.seeds) * (2 + len(train.extra_activations)),
        train_images=data.train_limit or remaining,
        validation_images=data.val_size or CIFAR10.test_images,  # 0: the test set (the tutorial's)
        test_images=CIFAR10.test_images,
        epochs=train.epochs,
        batch_size=train.batch_size,
        step_curve_steps=STEP_CURVE_STEPS,
        step_curve_images=STEP_CURVE_IMAGES,
        steps_per_execution=STEPS_PER_EXECUTION if train.distribution == "none" else 1,
    )


def estimate_seconds(plan: RunPlan, step_s: float, image_s: float) -> float:
    """Training steps and forward passes of every model, at the measured speeds."""
    per_model = plan.steps_per_epoch * plan.epochs * step_s + plan.forward_images * image_s
    return plan.models * per_model


@dataclass(frozen=True)
class Speed:
    step_s: float  # one training step of `batch_size` images
    image_s: float  # one image through the network, forward only
    model_bytes: int  # a trained model as train saves it (with the optimizer's state)
    served_bytes: int  # the same as logged to MLflow (weights only)


def check_timing(plan: RunPlan, speed: Speed, cpu: str) -> Result:
    minutes = estimate_seconds(plan, speed.step_s, speed.image_s) / 60
    return ok(
        "speed",
        f"`make run` trains for about {minutes:.0f} min on this CPU ({cpu}): "
        f"{plan.models} models × {plan.epochs} epochs × {plan.steps_per_epoch} steps at "
        f"{speed.step_s * 1000:.0f} ms a step, plus validation",
    )


def disk_need(plan: RunPlan, archive_bytes: int, image_bytes: int, speed: Speed) -> int:
    """Bytes `make run` writes in the project: the archive, the processed arrays and the models
    (each also in DVC's cache), and the served models in the local MLflow store."""
    outputs = archive_bytes + plan.processed_bytes(image_bytes) + plan.models * speed.model_bytes
    return DVC_COPIES * outputs + plan.models * speed.served_bytes


def check_disk(folder: Path | str, free: int, need: int, what: str) -> Result:
    """`what` says what takes the space, with its verb: "`make run` writes"."""
    if free >= need:
        return ok("disk", f"{megabytes(free)} free in {folder}; {what} about {megabytes(need)}")
    return fail(
        "disk",
        f"{megabytes(free)} free in {folder}, but {what} about {megabytes(need)}: free "
        f"{megabytes(need - free)} there, or move the project to a larger disk",
    )


def check_health(server: str, status: int | None, reason: str = "") -> Result:
    """GET /health answered `status` (None: no answer, `reason` why)."""
    if status == 200:
        return ok("server", f"{server} answers")
    if status is None:
        return fail(
            "server",
            f"cannot reach {server} ({reason}): check the address with your teacher (host and "
            "port exactly as given) and that this machine is on the room's network",
        )
    return fail(
        "server",
        f"{server}/health answered HTTP {status}, not as an MLflow server: check the address "
        "with your teacher",
    )


INVALID_HOST = "Invalid Host header"  # MLflow's own 403 for an address it was not started for


def refused_login(server: str, user: str, status: int, body: str, admin: bool = False) -> Result:
    """The login check's failure for an HTTP status other than 200."""
    if status == 401:
        who = "the admin's password (MLFLOW_AUTH_ADMIN_PASSWORD)" if admin else "ask your teacher"
        return fail("login", f"wrong user name or password for {user!r}: {who}")
    if status == 403 and INVALID_HOST in body:
        host = urllib.parse.urlsplit(server).netloc
        fix = (
            f"start the server with `--allowed-hosts {host}`, the address the students type"
            if admin
            else "use the server's address exactly as your teacher gave it"
        )
        return fail("login", f"{server} refuses requests addressed to {host} (403): {fix}")
    return fail("login", f"{server} answered HTTP {status} for {user!r}: show this to your teacher")


def check_student_login(
    server: str, user: str, status: int, body: str, experiments: Sequence[Mapping]
) -> Result:
    """An authenticated search for the student's class experiment answered `status`; on 200,
    `experiments` are those tagged with their account."""
    if status != 200:
        return refused_login(server, user, status, body)
    if not experiments:
        return fail(
            "login",
            f"{user!r} is accepted, but the server has no class experiment for {user!r} yet: ask "
            "your teacher to add you to the class list",
        )
    tags = experiments[0]["tags"]
    return ok(
        "login",
        f"{user!r} accepted; seed {tags.get('class.seed', '?')}, "
        f"experiment {experiments[0]['name']}",
    )


def check_digest(where: str, digest: str, expected: str, teacher: bool = False) -> Result:
    if digest == expected:
        return ok("archive", f"{where}: sha256 {digest[:12]}… as expected")
    fix = (
        "download the archive again, or give --sha256 of the copy you mean the class to use"
        if teacher
        else "check --sha256 with your teacher, or tell them the served file is not the class's"
    )
    return fail("archive", f"{where} has sha256 {digest[:12]}…, not {expected[:12]}…: {fix}")


def check_archive_answer(url: str, status: int | None, reason: str = "") -> Result | None:
    """None when the archive's URL answered 200 (the download goes on); a failure otherwise."""
    if status == 200:
        return None
    if status is None:
        return fail(
            "archive",
            f"cannot reach {url} ({reason}): check the address with your teacher and that "
            "their data server is running",
        )
    return fail("archive", f"{url} answered HTTP {status}: check the address with your teacher")


def check_teacher_server(server: str, status: int | None, port_free: bool | None) -> Result:
    """The teacher's tracking server: up, or (not answering) is its port free to start it?"""
    if status == 200:
        return ok("server", f"{server} answers")
    port = urllib.parse.urlsplit(server).port
    if status is None and port_free is False:
        return fail(
            "server",
            f"{server} does not answer, and port {port} here is taken by another program: stop "
            "it, or start the server on another PORT",
        )
    if status is None:
        return fail("server", f"{server} does not answer: start it (section 1), then check again")
    return fail("server", f"{server}/health answered HTTP {status}: is it an MLflow server?")


def check_admin(server: str, user: str, status: int, body: str, user_info: Mapping) -> Result:
    """GET users/get for the admin: 404 is a server without logins."""
    if status == 404:
        return ok("login", f"{server} has no logins (a room without logins)")
    if status != 200:
        return refused_login(server, user, status, body, admin=True)
    if not user_info.get("is_admin"):
        return fail(
            "login", f"{user!r} is not the server's admin: log in as admin_username of the ini file"
        )
    return ok("login", f"{user!r} is the server's admin")


def check_served(url: str, status: int | None, length: int | None, size: int, reason="") -> Result:
    """The teacher's data server: HEAD of the archive's URL, against the local file's size."""
    if status is None:
        return fail(
            "data",
            f"{url} does not answer ({reason}): start the data server (section 1), then check "
            "again",
        )
    if status != 200:
        return fail(
            "data",
            f"{url} answered HTTP {status}: serve the archive's folder, and give its file name "
            "in the URL",
        )
    if length is not None and length != size:
        return fail(
            "data",
            f"{url} serves {length:,} bytes, but the archive has {size:,}: serve the archive's "
            "own folder",
        )
    return ok("data", f"{url} serves the archive ({size:,} bytes)")


# ---- measurements: the machine, the servers ------------------------------------------------


def import_problems(modules: Sequence[str]) -> dict[str, str]:
    import importlib
    import warnings

    problems = {}
    with warnings.catch_warnings():
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
