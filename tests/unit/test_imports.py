"""Stages that need no TensorFlow must not pay for importing it."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "pipeline.download",
        "pipeline.preprocess",
        "pipeline.report",
        "pipeline.tracking",
        "pipeline.params",
    ],
)
def test_module_does_not_import_tensorflow(module):
    code = f"import sys, {module}; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
