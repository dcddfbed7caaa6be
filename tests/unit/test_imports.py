"""Stages that need no TensorFlow must not pay for importing it."""

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "pipeline.download",
        "pipeline.preprocess",
        "pipeline.report",
        "pipeline.tracking",
        "pipeline.outage",
        "pipeline.store",
        "pipeline.params",
    ],
)
def test_module_does_not_import_tensorflow(module):
    code = f"import sys, {module}; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_module_imports_without_fcntl():
    """fcntl exists only on Unix: the package must not need it (Windows has none)."""
    code = (
        "import sys, pkgutil, importlib, pipeline\n"
        "sys.modules['fcntl'] = None  # makes `import fcntl` raise ImportError\n"
        "names = [m.name for m in pkgutil.iter_modules(pipeline.__path__, 'pipeline.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    import pipeline

    modules = [p for p in Path(pipeline.__file__).parent.glob("*.py") if p.name != "__init__.py"]
    assert int(out.stdout) == len(modules)  # every one of them was imported
