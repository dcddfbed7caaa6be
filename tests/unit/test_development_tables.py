"""docs/development.md's table of params gives every key of params.yaml a row, and every test it
or the mutation pass names exists."""

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "development.md").read_text()
# `unit/test_x.py::test_y`, or `::test_y` for another test of the file named before it.
NAMED = re.compile(r"`(?:((?:unit|e2e)/test_\w+\.py))?::(test_\w+)`")


def section(title: str) -> str:
    return PAGE.split(f"### {title}\n", 1)[1].split("\n#", 1)[0]


def test_every_param_has_a_row():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    keys = [f"{name}.{key}" for name, values in params.items() for key in values]
    table = section("What each param controls, and the test that fails without it")
    assert [key for key in keys if f"`{key}`" not in table] == []


def test_every_test_named_exists():
    named = []
    for line in PAGE.splitlines():
        file = None
        for found, name in NAMED.findall(line):
            file = found or file
            assert file, f"{name} follows no file in: {line}"
            named.append((file, name))
    assert len(named) > 20
    defined = {}
    for file in {file for file, _ in named}:
        tree = ast.parse((ROOT / "tests" / file).read_text())
        defined[file] = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert [f"{file}::{name}" for file, name in named if name not in defined[file]] == []
