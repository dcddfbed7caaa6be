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
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;\\]+(?:\s*;[^\\]+)?)")


def locked() -> dict[str, str]:
    """Package → pinned version, for the pins whose markers hold on this machine."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        match = PIN.match(line)
        if not match:
            continue
        requirement = Requirement(match.group(1).strip())
        if requirement.marker is None or requirement.marker.evaluate():
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def declared() -> list[Requirement]:
    """Every requirement of pyproject.toml, its extras' included (not the project's own name,
    with which one extra names another)."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    texts = [*project["dependencies"], *chain(*project["optional-dependencies"].values())]
    requirements = [Requirement(text) for text in texts]
    return [r for r in requirements if canonicalize_name(r.name) != project["name"]]


def test_every_declared_dependency_is_pinned_within_its_range():
    pins = locked()
    for requirement in declared():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is in pyproject.toml but not in the lock; run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {name}=={pins[name]}, outside pyproject's {requirement.specifier}; "
            "run `make lock`"
        )


def test_every_pin_carries_a_hash():
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    pinned = [b for b in blocks if PIN.match(b)]
    assert pinned and all("--hash=sha256:" in b for b in pinned)


def test_the_lock_was_made_the_way_make_lock_makes_it():
    header = LOCK.read_text().splitlines()[1].lstrip("# ")
    makefile = (PROJECT / "Makefile").read_text()
    lock_args = re.search(r"^LOCK_ARGS := (.*)$", makefile, re.M).group(1)
    assert shlex.split(header) == shlex.split(
        f"uv pip compile pyproject.toml {lock_args} -o requirements.lock"
    )


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
