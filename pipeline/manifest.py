"""What a run ran on: versions, machine, threads, seeds and the data's checksum."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.files import sha256_file

PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "mlflow", "dvc", "numpy")


def package_versions() -> dict[str, str]:
    """Installed versions, read from package metadata (importing TensorFlow is not needed)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def data_checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file of the processed data."""
    return {p.name: sha256_file(p) for p in sorted(Path(directory).glob("*")) if p.is_file()}


def collect_manifest(
    seeds: dict[str, Any], data_dir: Path | None = None, threads: dict[str, int] | None = None
) -> dict:
    """Everything needed to tell whether two runs could have given the same numbers."""
    manifest = {
        "versions": package_versions(),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        # TensorFlow enables oneDNN by default on x86 Linux; TF_ENABLE_ONEDNN_OPTS=0 turns it off.
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
        "threads": threads or {},
        "seeds": seeds,
    }
    if data_dir is not None:
        manifest["data_sha256"] = data_checksums(data_dir)
    return manifest
