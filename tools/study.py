"""Run a cell study: one `dvc exp run` per cell not yet done, its files copied into the study.

    python tools/study.py reports/studies/claims --archive ../shared/data/cifar-10-python.tar.gz \
        --sha256 <the archive's sha256>

Run it in a clone of the repository (the experiments change params.yaml and dvc.lock there). The
study folder holds `cells.yaml` (settings common to every cell, then each cell's own); a cell
whose folder already holds a dvc.lock is done and skipped, so an interrupted study resumes where
it stopped. The archive path is given relative to the repository, so no folder of this machine
reaches the committed dvc.lock.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import yaml

KEPT = ("params.yaml", "dvc.lock", "results")


def machine() -> dict:
    """The CPU a cell trained on: the arithmetic, and so a seed's numbers, differ between CPUs
    with AVX-512 and those with AVX2 only."""
    info = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())  # the first processor's
    flags = set(info.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "neither"
    return {"cpu": info.get("model name", ""), "vector_extensions": vector}


def overrides(settings: dict) -> list[str]:
    """`-S key=value` arguments, lists in DVC's own `[a,b]` form."""
    args = []
    for key, value in settings.items():
        if isinstance(value, list):
            text = f"[{','.join(map(str, value))}]"
        elif isinstance(value, bool):
            text = str(value).lower()  # YAML's true/false, not Python's True/False
        else:
            text = str(value)
        args += ["-S", f"{key}={text}"]
    return args


def run_cell(study: Path, name: str, settings: dict, archive: str, sha256: str) -> float:
    start = time.perf_counter()
    data = {"data.url": archive, "data.sha256": sha256}
    command = ["dvc", "exp", "run", "-n", f"{study.name}-{name}", *overrides(data | settings)]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    target = study / name
    tmp = study / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for kept in KEPT:
        source = Path(kept)
        if source.is_dir():
            # DVC's own .gitignore files would keep its cached outputs (every seed's history,
            # diagnostics and step curve) out of the commit that the study is for.
            ignore = shutil.ignore_patterns("params.ok", ".gitignore")
            shutil.copytree(source, tmp / kept, ignore=ignore)
        else:
            shutil.copy2(source, tmp / kept)
    (tmp / "wall_seconds.json").write_text(json.dumps({"wall_seconds": round(seconds)}) + "\n")
    (tmp / "machine.json").write_text(json.dumps(machine()) + "\n")
    tmp.rename(target)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--archive", required=True, help="relative to the repository")
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--only", nargs="*", help="these cells only")
    args = parser.parse_args()
    plan = yaml.safe_load((args.study / "cells.yaml").read_text())
    for name, own in plan["cells"].items():
        if args.only and name not in args.only:
            continue
        if (args.study / name / "dvc.lock").is_file():
            print(f"{name}: done already", flush=True)
            continue
        seconds = run_cell(
            args.study, name, plan["common"] | (own or {}), args.archive, args.sha256
        )
        print(f"{name}: {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
