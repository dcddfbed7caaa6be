"""The pinned environment: requirements.lock agrees with pyproject.toml and is what is installed."""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib import metadata
from itertools import chain

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from project import PROJECT

LOCK = PROJECT / "requirements.lock"
# `make install GPU=1`: the same pins, but TensorFlow with its CUDA libraries for tensorflow-cpu.
GPU_LOCK = PROJECT / "requirements-gpu.lock"
GPU_ONLY = re.compile(r"^(tensorflow|nvidia-.*)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;\\]+(?:\s*;[^\\]+)?)")


def locked(lock=LOCK) -> dict[str, str]:
    """Package → pinned version, for the pins whose markers hold on this machine."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if not match:
            continue
        requirement = Requirement(match.group(1).strip())
        if requirement.marker is None or requirement.marker.evaluate():
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def declared(gpu: bool = False) -> list[Requirement]:
    """Every requirement of pyproject.toml, its extras' included (not the project's own name,
    with which one extra names another); the gpu extra only for the GPU lock, which drops
    tensorflow-cpu."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    extras = {k: v for k, v in project["optional-dependencies"].items() if gpu or k != "gpu"}
    base = [t for t in project["dependencies"] if not (gpu and t.startswith("tensorflow-cpu"))]
    texts = [*base, *chain(*extras.values())]
    requirements = [Requirement(text) for text in texts]
    return [r for r in requirements if canonicalize_name(r.name) != project["name"]]


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_every_declared_dependency_is_pinned_within_its_range(gpu):
    pins = locked(GPU_LOCK if gpu else LOCK)
    for requirement in declared(gpu):
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in the lock; run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}; "
            "run `make lock`"
        )


@pytest.mark.parametrize("lock", [LOCK, GPU_LOCK], ids=["cpu", "gpu"])
def test_every_pin_carries_a_hash(lock):
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n", 2)[2])
    pinned = [b for b in blocks if PIN.match(b)]
    assert pinned and all("--hash=sha256:" in b for b in pinned)


@pytest.mark.parametrize(
    ("lock", "variable"), [(LOCK, "LOCK_ARGS"), (GPU_LOCK, "GPU_LOCK_ARGS")], ids=["cpu", "gpu"]
)
def test_the_lock_was_made_the_way_make_lock_makes_it(lock, variable):
    header = lock.read_text().splitlines()[1].lstrip("# ")
    makefile = (PROJECT / "Makefile").read_text()
    args = re.search(rf"^{variable} := (.*)$", makefile, re.M).group(1)
    args = args.replace("$(LOCK_ARGS)", re.search(r"^LOCK_ARGS := (.*)$", makefile, re.M).group(1))
    assert shlex.split(header) == shlex.split(
        f"uv pip compile pyproject.toml {args} -o {lock.name}"
    )


def test_the_gpu_lock_keeps_step_with_the_main_lock():
    """Every pin is the same in both, but TensorFlow and its CUDA libraries (Linux x86_64)."""
    everywhere = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)
    cpu = dict(everywhere.findall(LOCK.read_text()))
    gpu = dict(everywhere.findall(GPU_LOCK.read_text()))
    differ = {n for n in cpu.keys() | gpu.keys() if cpu.get(n) != gpu.get(n)}
    assert all(GPU_ONLY.match(n) for n in differ), sorted(differ)
    assert gpu["tensorflow"] == cpu["tensorflow-cpu"]  # the same TensorFlow, with CUDA
    assert any(n.startswith("nvidia-cudnn") for n in gpu)
    assert re.search(r"^tensorflow-cpu==\S+ ; sys_platform == 'never'", GPU_LOCK.read_text(), re.M)


def test_the_installed_environment_is_the_lock():
    """`make test` installed exactly the lock: every pin that applies here, at its version."""
    if not (PROJECT / ".venv" / ".installed").exists():
        pytest.skip("not running in the environment `make install` made")
    wrong = {}
    for name, version in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, "locked vs installed: " + repr(wrong)
