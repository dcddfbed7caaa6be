"""The README's team tracking server, run as written: a throwaway PostgreSQL 15 cluster, `mlflow
server --app-name basic-auth`, a user made by the admin, and the README's two queued experiments
logging to it at once with that user's credentials, then compared with `dvc exp show` and `dvc
plots diff`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from project import (
    clean_env,
    free_port,
    make_repo,
    postgres_cluster,
    readme_blocks,
    run,
    stage_env,
    start_script,
    wait_for_url,
)

pytestmark = pytest.mark.servers

DB_PASSWORD = "db-secret-for-tests"
ADMIN_PASSWORD = "admin-secret-for-tests"
ALICE_PASSWORD = "alice-secret-for-tests"
EXPERIMENTS = ("lr-0.0005", "lr-0.002")
STAGES = {"train_sigmoid@42", "train_relu@42", "evaluate", "report"}


def wait_for_queue(repo: Path, env: dict[str, str], seconds: float = 600) -> str:
    """`dvc queue status` once nothing is queued or running. Each look at it starts DVC (~2 s
    of CPU that the queued runs need), so it is asked every 10 s only once git has a ref for
    every experiment (made when DVC collects a finished one; git's look costs next to nothing),
    and otherwise every minute (a failed experiment gets no ref)."""
    deadline = time.monotonic() + seconds
    asked = time.monotonic()
    while True:
        time.sleep(2)
        refs = subprocess.run(
            ["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
            cwd=repo,
            capture_output=True,
            text=True,
        ).stdout.split()
        collected = {ref.rsplit("/", 1)[-1] for ref in refs} >= set(EXPERIMENTS)
        if time.monotonic() - asked >= (10 if collected else 60):
            status = run(["dvc", "queue", "status"], repo, env)
            asked = time.monotonic()
            if not any(word in status for word in ("Queued", "Running")):
                return status
            assert time.monotonic() < deadline, status


def queue_diagnosis(repo: Path) -> str:
    """The experiment refs and the end of each queue worker's log (a failed collection of a
    finished experiment is logged there only)."""
    refs = subprocess.run(
        ["git", "for-each-ref", "refs/exps"], cwd=repo, capture_output=True, text=True
    ).stdout
    logs = sorted((repo / ".dvc" / "tmp" / "exps" / "celery").glob("*.out"))
    return "\n".join([f"refs:\n{refs}", *(f"{f.name}:\n{f.read_text()[-3000:]}" for f in logs)])


def test_the_readme_team_server_with_postgresql_and_authentication(tmp_path, tiny_archive):
    server_blocks = readme_blocks("team-server")
    assert len(server_blocks) == 3, "the README's server, user and client blocks"
    start_server, add_user, client = server_blocks
    queue, compare = readme_blocks("queue")
    with postgres_cluster("mlflow", DB_PASSWORD, "mlflow") as db:
        port = free_port()
        values = {
            "DB_URI": f"postgresql+psycopg://mlflow:{DB_PASSWORD}@{db}/mlflow",
            "ARTIFACTS": str(tmp_path / "artifacts"),
            "SERVER_HOST": "127.0.0.1",
            "PORT": str(port),
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ALICE_PASSWORD": ALICE_PASSWORD,
        }
        env = clean_env(**values)
        server_dir = tmp_path / "server"
        server_dir.mkdir()
        (server_dir / ".venv").symlink_to(Path(sys.prefix))  # a clone with `make install` done
        log = server_dir / "server.log"
        # start_new_session: the shell and the server it starts are stopped together.
        server = start_script(start_server, server_dir, env, log, start_new_session=True)
        uri = f"http://127.0.0.1:{port}"
        repo = None
        try:
            wait_for_url(f"{uri}/health", server, log)
            run(["bash", "-euo", "pipefail", "-c", add_user], server_dir, env, timeout=60)

            # Without credentials the API answers 401.
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1")
            assert refused.value.code == 401

            repo = make_repo(tmp_path / "clone", *tiny_archive, clean_env())
            # A wrong password: one line naming the variables, before anything runs.
            wrong = subprocess.run(
                ["python", "-m", "pipeline.download", "--output", "data/raw/archive.tar.gz"],
                cwd=repo,
                env=stage_env(
                    uri, MLFLOW_TRACKING_USERNAME="alice", MLFLOW_TRACKING_PASSWORD="wrong"
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            errors = [line for line in wrong.stderr.splitlines() if line.startswith("error: ")]
            assert wrong.returncode == 1 and "Traceback" not in wrong.stderr, wrong.stderr
            assert len(errors) == 1 and "MLFLOW_TRACKING_PASSWORD" in errors[0], errors
            assert "(401)" in errors[0] and not (repo / "data").exists()

            started = start_script(client + queue, repo, env, tmp_path / "client.log")
            assert started.wait(timeout=300) == 0, (tmp_path / "client.log").read_text()
            status = wait_for_queue(repo, env)
            assert status.count("Success") == 2, status
            compared = start_script(client + compare, repo, env, tmp_path / "compare.log")
            if compared.wait(timeout=300) != 0:
                pytest.fail((tmp_path / "compare.log").read_text()[-3000:] + queue_diagnosis(repo))
            check_runs(uri, db, tmp_path / "artifacts")
            check_experiments(repo, env)
        finally:
            if repo is not None:
                subprocess.run(
                    ["dvc", "queue", "stop", "--kill"], cwd=repo, env=env, capture_output=True
                )
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def check_runs(uri: str, db: str, artifacts: Path) -> None:
    """Both experiments' stage runs, read through the server as alice and counted in PostgreSQL."""
    import psycopg

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", ALICE_PASSWORD)
        client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("cifar10-activations")
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_experiment: dict[str, set[str]] = {}
    for r in runs:
        assert r.info.status == "FINISHED", r.info.run_name
        by_experiment.setdefault(r.data.tags.get("dvc_experiment"), set()).add(r.info.run_name)
    for name in EXPERIMENTS:
        assert by_experiment.get(name, set()) >= STAGES, (name, by_experiment)
    host, port = db.split(":")
    conninfo = f"host={host} port={port} user=mlflow password={DB_PASSWORD} dbname=mlflow"
    with psycopg.connect(conninfo) as conn:
        (counted,) = conn.execute(
            "SELECT count(*) FROM runs r JOIN experiments e USING (experiment_id) "
            "WHERE e.name = 'cifar10-activations' AND r.status = 'FINISHED'"
        ).fetchone()
        tagged = dict(
            conn.execute(
                "SELECT value, count(*) FROM tags WHERE key = 'dvc_experiment' GROUP BY value"
            ).fetchall()
        )
    assert counted == len(runs)
    for name in EXPERIMENTS:
        assert tagged[name] == sum(r.data.tags.get("dvc_experiment") == name for r in runs), tagged
    # The report went through the server into the artifacts folder, once per experiment.
    assert len(list(artifacts.rglob("report.md"))) == len(EXPERIMENTS)


def check_experiments(repo: Path, env: dict[str, str]) -> None:
    """`dvc exp show` lists both with their test metrics; `dvc plots diff` overlays both
    experiments' validation curves, per activation."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo, env))
    experiments = {
        e["name"]: e["revs"][0]["data"] for b in shown for e in (b.get("experiments") or [])
    }
    losses = {}
    for name in EXPERIMENTS:
        metrics = experiments[name]["metrics"]["results/test_metrics.json"]["data"]
        losses[name] = metrics["relu"]["test_loss"]
    # The same data, seed and code: only the learning rate can tell the two models apart.
    assert len(set(losses.values())) == 2, losses
    diff = json.loads(
        run(
            [
                *("dvc", "plots", "diff", *EXPERIMENTS, "--json"),
                *("--targets", "validation_accuracy"),
            ],
            repo,
            env,
        )
    )
    (plot,) = diff["data"]["validation_accuracy"]
    revs = {(p["rev"], p["filename"].split("/")[-2]) for p in plot["content"]["data"]["values"]}
    assert revs == {(r, a) for r in EXPERIMENTS for a in ("sigmoid", "relu")}
