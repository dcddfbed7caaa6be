"""Activations by name: any of Keras' (`selu`, `mish`, …) or a user's own (`package.module:function`).

Also stage `activation@<name>`: a fingerprint of where an extra activation comes from, which its
train stages depend on, so editing a user's function retrains its models and no others. Keras'
own activations are fingerprinted by name only: a Keras upgrade retrains nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline import cli
from pipeline.errors import PipelineError
from pipeline.files import sha256_file, write_json


class ActivationError(PipelineError):
    """An activation name that names nothing the network can be built with."""


def is_user_defined(name: str) -> bool:
    return ":" in name


def slug(name: str) -> str:
    """The name where MLflow allows only letters, digits, `_` and `-` (model names, metric
    prefixes): `mypkg.acts:my_act` → `mypkg_acts_my_act`; Keras' names are unchanged."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _project_root_on_path() -> None:
    root = str(Path.cwd())
    if root not in sys.path:
        sys.path.insert(0, root)  # the project root: stages run from it


def _not_importable(name: str, module_name: str, why: object) -> ActivationError:
    return ActivationError(
        f"activation {name!r}: cannot import {module_name} ({why}); put the module under "
        "the project root or on PYTHONPATH"
    )


def _import(module_name: str, name: str):
    _project_root_on_path()
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise _not_importable(name, module_name, exc) from None


def resolve(name: str) -> Callable:
    """The function `name` stands for."""
    import keras

    if is_user_defined(name):
        module_name, _, function_name = name.partition(":")
        function = getattr(_import(module_name, name), function_name, None)
        if not callable(function):
            raise ActivationError(f"activation {name!r}: {module_name} has no {function_name}")
        return function
    try:
        return keras.activations.get(name)
    except ValueError:
        raise ActivationError(
            f"unknown activation {name!r}: Keras has no activation of that name (see "
            "keras.activations); give your own as package.module:function"
        ) from None


def source_file(name: str) -> Path | None:
    """The file that defines a user's activation; None for Keras' own. Found without running
    it: a user's module usually imports Keras, which would cost the fingerprint seconds."""
    if not is_user_defined(name):
        return None
    module_name = name.partition(":")[0]
    _project_root_on_path()
    try:
        spec = importlib.util.find_spec(module_name)  # runs its packages' __init__ only
    except ImportError as exc:
        raise _not_importable(name, module_name, exc) from None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        raise _not_importable(name, module_name, f"no module named {module_name!r}")
    return Path(spec.origin).resolve()


def code_path(name: str) -> Path | None:
    """What a loader elsewhere must be able to import: the user's top-level package (or module)."""
    if not is_user_defined(name):
        return None
    top = name.partition(":")[0].split(".")[0]
    path = Path(_import(top, name).__file__).resolve()
    return path.parent if path.name == "__init__.py" else path


def custom_objects(names: Sequence[str]) -> dict[str, Callable]:
    """What `keras.saving.load_model` needs besides Keras for models with these activations."""
    functions = [resolve(n) for n in names if is_user_defined(n)]
    return {function.__name__: function for function in functions}


def fingerprint(name: str) -> dict[str, str]:
    """Where the activation comes from: Keras, or the user's file and its sha256."""
    path = source_file(name)
    if path is None:
        return {"activation": name, "source": "keras"}
    try:
        shown = str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = path.name  # outside the project: never a folder of this machine
    return {
        "activation": name,
        "source": shown,
        "sha256": sha256_file(path),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = cli.stage_parser(__doc__, "output")
    parser.add_argument("--activation", required=True)
    args, _ = cli.parse_stage(parser, argv)
    found = fingerprint(args.activation)
    write_json(args.output, found)
    print(f"activation {args.activation}: from {found['source']}")


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
