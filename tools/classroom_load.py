"""Thirty students logging to one class server at once, on 127.0.0.1: docs/classroom.md's numbers.

A developer's tool, not part of `make test`:

    python tools/classroom_load.py record --store mlflow.db --run train_relu@42 \
        --output tools/recorded_run.json
    python tools/classroom_load.py run --clients 30 --real 3 --output load.json

`run` starts the server as docs/classroom.md does (basic-auth, SQLite store, artifacts proxied),
makes one account per client with pipeline.classroom, then starts every client at once, each in
its own process: `--real` of them are real students (a clone of this project running
`python -m pipeline.classroom run` on a tiny archive, 10 epochs, through `dvc exp run`), the
others replay a recorded 10-epoch training's logging calls as fast as the server takes them
(params, every metric batch in the order it was logged, a model-sized artifact). Every request's
time is measured in the client; at the end the store's own tables are counted, so "every metric
arrived" is checked in the database, not believed. Bounded: clients and time are capped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PASSWORD = "load-test-password"
TEACHER_PASSWORD = "load-test-teacher"
TIMEOUT_S = 1200  # the whole load, at most


def record(store: Path, run_name: str, output: Path) -> None:
    """What one finished run logged, in order: params, metric batches (by timestamp), artifacts."""
    with sqlite3.connect(store) as db:
        (run_id, artifact_uri) = db.execute(
            "SELECT run_uuid, artifact_uri FROM runs WHERE name = ? AND status = 'FINISHED' "
            "ORDER BY start_time DESC LIMIT 1",
            (run_name,),
        ).fetchone()
        params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)))
        rows = db.execute(
            "SELECT key, value, step, timestamp FROM metrics WHERE run_uuid = ? "
            "ORDER BY timestamp, key",
            (run_id,),
        ).fetchall()
    batches = [
        [[key, value, step] for key, value, step, _ in group]
        for _, group in groupby(rows, key=lambda r: r[3])
    ]
    folder = Path(artifact_uri.removeprefix("file://"))
    artifacts = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    model = PROJECT / "models" / params.get("activation", "relu") / f"seed{params['seed']}.keras"
    recorded = {
        "run": run_name,
        "params": params,
        "batches": batches,
        "artifacts": artifacts,
        "model_bytes": model.stat().st_size if model.exists() else 11_000_000,
    }
    output.write_text(json.dumps(recorded, indent=1) + "\n")
    values = sum(len(b) for b in batches)
    print(
        f"recorded {run_name}: {len(params)} params, {values} metric values in {len(batches)} batches"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, port: int, workers: int) -> subprocess.Popen:
    # Imported where used, like the tool's other imports of the package: the spawned clients
    # re-import this module, and pipeline.ui brings in MLflow.
    from pipeline.ui import NO_JOB_RUNNER

    ini = folder / "class_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///class_auth.db\n"
        "admin_username = teacher\nauth_cache_ttl_seconds = 60\n"
    )
    env = os.environ | NO_JOB_RUNNER  # as docs/classroom.md starts it
    env |= {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "load-test-secret",
        "MLFLOW_AUTH_ADMIN_PASSWORD": TEACHER_PASSWORD,
    }
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [
        *(str(mlflow), "server", "--app-name", "basic-auth"),
        *("--backend-store-uri", "sqlite:///class.db", "--artifacts-destination", "artifacts"),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
    ]
    log = open(folder / "server.log", "w")  # noqa: SIM115 - the server outlives this function
    proc = subprocess.Popen(
        cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the server did not start; see " + str(folder / "server.log"))


def replay(args: tuple[str, str, dict, Path, float]) -> dict:
    """One student's training, replayed: every request timed."""
    uri, account, recorded, artifact, start_at = args
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
        account,
        PASSWORD,
    )
    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(tracking_uri=uri)
    timings: list[tuple[str, float]] = []
    errors: list[str] = []

    def timed(kind: str, call, *a, **kw):
        begun = time.perf_counter()
        try:
            return call(*a, **kw)
        except Exception as exc:  # counted and reported, never hidden
            errors.append(f"{kind}: {type(exc).__name__}: {str(exc)[:200]}")
        finally:
            timings.append((kind, time.perf_counter() - begun))

    experiment = client.get_experiment_by_name(f"cifar10-activations-{account}")
    time.sleep(max(0.0, start_at - time.time()))  # every client starts together
    run = timed(
        "create_run",
        client.create_run,
        experiment.experiment_id,
        run_name=recorded["run"],
        tags={"stage": recorded["run"], "activation": recorded["params"].get("activation", "relu")},
    )
    if run is None:
        return {"account": account, "timings": timings, "errors": errors, "sent": 0}
    run_id = run.info.run_id
    params = [Param(k, v) for k, v in recorded["params"].items()]
    timed("log_batch", client.log_batch, run_id, params=params)
    sent = 0
    for batch in recorded["batches"]:
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, s) for k, v, s in batch]
        timed("log_batch", client.log_batch, run_id, metrics=metrics)
        sent += len(metrics)
    timed("log_artifact", client.log_artifact, run_id, str(artifact), "model")
    timed("set_terminated", client.set_terminated, run_id, "FINISHED")
    return {
        "account": account,
        "timings": timings,
        "errors": errors,
        "sent": sent,
        "run_id": run_id,
    }


def student_clone(home: Path, uri: str, account: str, password: str) -> dict[str, str]:
    """A clone of this project at `home` on this environment; returns the environment a student
    runs `python -m pipeline.classroom run` in there, logged in to `uri` as `account`."""
    subprocess.run(["git", "clone", "-q", str(PROJECT), str(home)], check=True)
    (home / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    return env | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_TRACKING_USERNAME": account,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


def real_student(home: Path, uri: str, account: str, archive: Path) -> subprocess.Popen:
    """A clone of this project, shrunk to the tiny archive, running the student's command."""
    env = student_clone(home, uri, account, PASSWORD)
    params = (home / "params.yaml").read_text().replace("val_size: 5000", "val_size: 50")
    (home / "params.yaml").write_text(params)
    log = open(home / "student.log", "w")  # noqa: SIM115 - the process outlives this function
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.classroom", "run"],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def percentile(values: Sequence[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def load(clients: int, real: int, recorded: dict, workers: int, keep: Path | None) -> dict:
    sys.path.insert(0, str(PROJECT / "tests"))
    from tiny_cifar import write_tiny_cifar

    from pipeline.classroom_accounts import Student, create_accounts
    from pipeline.params import load_params

    folder = Path(tempfile.mkdtemp(prefix="classroom-load-"))
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(folder, port, workers)
    try:
        archive = folder / "cifar-10-python.tar.gz"
        sha = write_tiny_cifar(archive)
        accounts = [f"student{i:02d}" for i in range(1, clients + 1)]
        os.environ |= {
            "MLFLOW_TRACKING_USERNAME": "teacher",
            "MLFLOW_TRACKING_PASSWORD": TEACHER_PASSWORD,
        }
        students = [Student(a, 42 + i, PASSWORD) for i, a in enumerate(accounts)]
        create_accounts(uri, load_params(PROJECT / "params.yaml"), students, archive.as_uri(), sha)
        artifact = folder / "model.keras"
        artifact.write_bytes(os.urandom(recorded["model_bytes"]))
        started = time.time()
        procs = {a: real_student(folder / a, uri, a, archive) for a in accounts[:real]}
        with multiprocessing.get_context("spawn").Pool(clients - real) as pool:
            jobs = [(uri, a, recorded, artifact, started + 5) for a in accounts[real:]]
            pending = pool.map_async(replay, jobs)
            replayed = pending.get(timeout=TIMEOUT_S)
        real_codes = {a: p.wait(timeout=TIMEOUT_S) for a, p in procs.items()}
        total = time.time() - started
        arrived = count_arrived(folder / "class.db", [r.get("run_id") for r in replayed])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    timings = [t for r in replayed for t in r["timings"]]
    by_kind = {}
    for kind in sorted({k for k, _ in timings}):
        seconds = [s for k, s in timings if k == kind]
        by_kind[kind] = {
            "requests": len(seconds),
            "p50_ms": round(1000 * percentile(seconds, 50), 1),
            "p95_ms": round(1000 * percentile(seconds, 95), 1),
        }
    every = [s for _, s in timings]
    result = {
        "clients": clients,
        "real_trainings": real,
        "server_workers": workers,
        "cpu": cpu_name(),
        "total_seconds": round(total, 1),
        "requests": len(every),
        "p50_ms": round(1000 * percentile(every, 50), 1),
        "p95_ms": round(1000 * percentile(every, 95), 1),
        "by_kind": by_kind,
        "client_errors": [e for r in replayed for e in r["errors"]],
        "metric_values_sent": sum(r["sent"] for r in replayed),
        "metric_values_in_store": arrived,
        "real_students": {
            a: {"exit": code, "runs_finished": finished_runs(folder / "class.db", a)}
            for a, code in real_codes.items()
        },
    }
    if keep:
        shutil.copytree(folder, keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("student*"))
    shutil.rmtree(folder, ignore_errors=True)
    return result


def count_arrived(db: Path, run_ids: Sequence[str | None]) -> int:
    with sqlite3.connect(db) as conn:
        return sum(
            conn.execute("SELECT count(*) FROM metrics WHERE run_uuid = ?", (r,)).fetchone()[0]
            for r in run_ids
            if r
        )


def finished_runs(db: Path, account: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM runs r JOIN experiments e USING (experiment_id) "
            "WHERE e.name = ? AND r.status = 'FINISHED'",
            (f"cifar10-activations-{account}",),
        ).fetchone()[0]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            flags = Path("/proc/cpuinfo").read_text()
            return line.split(":", 1)[1].strip() + (" (AVX-512)" if "avx512f" in flags else "")
    return platform.processor()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record")
    rec.add_argument("--store", type=Path, required=True)
    rec.add_argument("--run", required=True)
    rec.add_argument("--output", type=Path, required=True)
    go = commands.add_parser("run")
    go.add_argument("--clients", type=int, default=30)
    go.add_argument("--real", type=int, default=3, help="how many clients are real trainings")
    go.add_argument("--workers", type=int, default=4, help="the server's worker processes")
    go.add_argument("--recorded", type=Path, default=Path(__file__).with_name("recorded_run.json"))
    go.add_argument("--output", type=Path, help="write the figures here as JSON")
    go.add_argument("--keep", type=Path, help="copy the server's folder here afterwards")
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.store, args.run, args.output)
        return 0
    if not 1 <= args.clients <= 60 or not 0 <= args.real <= min(args.clients - 1, 5):
        parser.error("--clients 1..60, --real 0..5 and fewer than --clients")
    result = load(
        args.clients, args.real, json.loads(args.recorded.read_text()), args.workers, args.keep
    )
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    lost = result["metric_values_sent"] - result["metric_values_in_store"]
    bad_real = [a for a, r in result["real_students"].items() if r["exit"] != 0]
    return 1 if result["client_errors"] or lost or bad_real else 0


if __name__ == "__main__":
    sys.exit(main())
