"""The pre-lab check's verdicts: one line per check, decided from what was measured (pure
functions), and what `make run` trains and writes, counted from params.yaml.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MINIMUM_PYTHON = (3, 11)
# The newest CPython the lock's TensorFlow (2.21) publishes packages for; moves with the lock.
NEWEST_PYTHON = (3, 13)
# DVC keeps each output twice: in the project and in its cache (a copy, unless the file
# system can reflink), so every output counts twice.
DVC_COPIES = 2


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


def check_python(version_info: Sequence[int]) -> Result:
    found = ".".join(map(str, version_info[:3]))
    low, high = (".".join(map(str, v)) for v in (MINIMUM_PYTHON, NEWEST_PYTHON))
    wanted = f"{low} to {high}"
    version = tuple(version_info[:2])
    if MINIMUM_PYTHON <= version <= NEWEST_PYTHON:
        return ok("python", f"Python {found} ({wanted} is needed)")
    problem = "too old" if version < MINIMUM_PYTHON else "too new for TensorFlow's packages"
    pick = low if version < MINIMUM_PYTHON else high
    return fail(
        "python",
        f"Python {found} is {problem}: install Python {wanted}, then rebuild the "
        f"environment with it: `make clean && make install PYTHON=python{pick}`",
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
