"""dvc.yaml names, for every stage, exactly the package modules its command runs: the module
and everything it imports from the package, directly or not. A module missing there would let
a change to it leave stale outputs; one too many would rerun a stage for nothing."""

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def imported(module: str) -> set[str]:
    """The package modules `module` imports, at any depth of its code."""
    tree = ast.parse((ROOT / "pipeline" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "pipeline":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("pipeline.")}
    return found


def closure(module: str) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += imported(current)
    return seen


def test_closure_follows_imports_of_imports():
    assert {"train", "model", "activations", "params", "cifar"} <= closure("train")
    assert "tracking" not in closure("params")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_depends_on_exactly_the_code_it_runs(name):
    stage = STAGES[name].get("do", STAGES[name])
    module = re.search(r"python -m pipeline\.(\w+)", stage["cmd"]).group(1)
    listed = {
        Path(dep).stem
        for dep in stage["deps"]
        if dep.startswith("pipeline/") and dep.endswith(".py")
    }
    assert listed == closure(module), f"dvc.yaml stage {name}: list pipeline/<m>.py for each m"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_logs_the_params_dvc_yaml_lists_for_it(name):
    from pipeline.params import STAGE_PARAMS

    stage = STAGES[name].get("do", STAGES[name])
    module = re.search(r"python -m pipeline\.(\w+)", stage["cmd"]).group(1)
    listed = tuple(key for key in stage.get("params", []) if isinstance(key, str))
    if module in STAGE_PARAMS:
        assert listed == STAGE_PARAMS[module], f"dvc.yaml stage {name} or params.STAGE_PARAMS"
    else:  # check_params reads the whole file; the activation stage reads none
        assert module in ("check_params", "activations")
