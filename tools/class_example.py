"""A real class of five on one machine, as docs/classroom.md runs it: the lab kit's example.

    python tools/class_example.py --archive ../shared/data/cifar-10-python.tar.gz \
        --output docs/class-example --keep ../class-example-server

On 127.0.0.1: the teacher's tracking server (logins, SQLite) and a plain web server for the
archive; `python -m pipeline.classroom accounts` for alice … erin (seeds 42–46); then each
student, one after another as if on a laptop of their own, in a fresh clone of this project
running `python -m pipeline.classroom run` with the project's own params (the full archive, 10
epochs); then the teacher's `python -m pipeline.classroom report`. Written to --output: the
pooled report and its figures, and `run-times.json` (each student's wall time and the CPU).
--keep copies the server's folder (store and models) so the report can be written again later,
from that folder alone and without training:

    python tools/class_example.py --again ../class-example-server --output docs/class-example
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from classroom_load import TEACHER_PASSWORD, cpu_name, free_port, start_server, student_clone

PROJECT = Path(__file__).resolve().parents[1]
STUDENTS = ("alice", "bob", "carol", "dave", "erin")
PASSWORD = "class-example-password"


def student(home: Path, uri: str, account: str) -> float:
    """One student's clone and command; returns its wall seconds."""
    env = student_clone(home, uri, account, PASSWORD)
    begun = time.perf_counter()
    with open(home / "student.log", "w") as log:
        code = subprocess.run(
            [sys.executable, "-m", "pipeline.classroom", "run"],
            cwd=home,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        ).returncode
    seconds = time.perf_counter() - begun
    if code != 0:
        raise SystemExit(f"{account}'s run failed ({code}); see {home / 'student.log'}")
    return seconds


def teacher_env(uri: str) -> dict[str, str]:
    return os.environ | {
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_TRACKING_USERNAME": "teacher",
        "MLFLOW_TRACKING_PASSWORD": TEACHER_PASSWORD,
    }


def write_report(uri: str, folder: Path, output: Path, times: dict) -> None:
    """The teacher's pooled report, with the students' run times beside it, into `output`."""
    staging = folder / "report"
    subprocess.run(
        [sys.executable, "-m", "pipeline.classroom", "report", "--output", str(staging)],
        cwd=PROJECT,
        env=teacher_env(uri),
        check=True,
    )
    (staging / "run-times.json").write_text(json.dumps(times, indent=1) + "\n")
    shutil.rmtree(output, ignore_errors=True)
    shutil.copytree(staging, output)
    shutil.rmtree(staging)


def again(kept: Path, output: Path) -> int:
    """The report once more from a kept server folder: the class's runs are not trained again."""
    times = json.loads((output / "run-times.json").read_text())
    port = free_port()
    server = start_server(kept, port, workers=2)
    try:
        write_report(f"http://127.0.0.1:{port}", kept, output, times)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--archive", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--keep", type=Path, help="copy the server's folder here afterwards")
    parser.add_argument("--again", type=Path, help="a kept server folder: write the report only")
    args = parser.parse_args()
    if args.again:
        return again(args.again, args.output)
    if not args.archive:
        parser.error("--archive is needed to run a class (or --again KEPT for the report only)")
    archive = args.archive.resolve()
    folder = Path(tempfile.mkdtemp(prefix="class-example-"))
    port, data_port = free_port(), free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(folder, port, workers=2)
    data = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(data_port), "--bind", "127.0.0.1"],
        cwd=archive.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        class_list = folder / "class.txt"
        class_list.write_text("".join(f"{name} {PASSWORD}\n" for name in STUDENTS))
        data_url = f"http://127.0.0.1:{data_port}/{archive.name}"
        subprocess.run(
            [
                *(sys.executable, "-m", "pipeline.classroom", "accounts", str(class_list)),
                *("--archive", str(archive), "--data-url", data_url),
            ],
            cwd=PROJECT,
            env=teacher_env(uri),
            check=True,
        )
        seconds = {}
        for name in STUDENTS:
            seconds[name] = round(student(folder / name, uri, name))
            print(f"{name}: {seconds[name]} s", flush=True)
        times = {"cpu": cpu_name(), "cores": os.cpu_count(), "student_seconds": seconds}
        write_report(uri, folder, args.output, times)
    finally:
        for proc in (server, data):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    if args.keep:
        ignore = shutil.ignore_patterns(*STUDENTS, "report")
        shutil.copytree(folder, args.keep, dirs_exist_ok=True, ignore=ignore)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
