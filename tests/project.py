"""Copying the project into a throwaway git repository and driving DVC in it."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from pipeline.ui import NO_JOB_RUNNER  # the tests' servers start as the docs' do

PROJECT = Path(__file__).resolve().parents[1]
PROJECT_FILES = [
    "pipeline",
    "dvc.yaml",
    "params.yaml",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
    "reports/studies",
]
REAL_ARCHIVE = Path(
    os.environ.get("CIFAR10_ARCHIVE", PROJECT.parent / "shared" / "data" / "cifar-10-python.tar.gz")
)
# The shared mirror's sha256 (its README); not the canonical release's.
REAL_SHA256 = "e52a1ffb853e969fd30e4d8aa4d6f9827e577ef51e73dce9728e662c5dc608a9"

README = PROJECT / "README.md"
# The pages whose shell blocks run as written: the README first, then docs/ in name order.
DOC_PAGES = [README, *sorted((PROJECT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```sh(?: ([a-z-]+))?\n(.*?)^```$", re.M | re.S)
# README blocks run by tests of their own (team-server and queue: test_team_server.py; machines:
# test_mlflow_models.py; classroom, classroom-student and classroom-tls: test_classroom.py;
# classroom-reference: test_classroom_reference.py; prelab and
# prelab-teacher: test_prelab.py; smoke: test_readme_smoke.py); untagged ones by test_readme.py;
# no-test ones by none.
OWN_TESTS = {
    *("team-server", "queue", "machines", "classroom", "classroom-student", "smoke"),
    *("classroom-tls", "classroom-reference", "prelab", "prelab-teacher"),
}

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    """Run a command; fail the test with its output when it fails."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-4000:]}"
    return output


def write_params(path: Path, base: Path | None = None, **overrides: object) -> Path:
    """`base` (default: the project's params.yaml) with overrides, written to `path`.

    write_params(path, train__epochs=1) sets train.epochs.
    """
    params = yaml.safe_load((base or PROJECT / "params.yaml").read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def set_params(repo: Path, **overrides: object) -> None:
    """set_params(repo, train__epochs=1) sets train.epochs in repo/params.yaml."""
    path = repo / "params.yaml"
    write_params(path, path, **overrides)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without MLflow/DVC settings, with the venv's tools first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return {**env, **extra}


def make_repo(root: Path, archive: Path, sha256: str, env: dict[str, str]) -> Path:
    """The project in a new git repository at `root`, shrunk to the tiny archive and 1 epoch."""
    for name in PROJECT_FILES:
        source, target = PROJECT / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    set_params(
        root,
        data__url=archive.as_uri(),
        data__sha256=sha256,
        data__val_size=50,
        train__epochs=1,
        evaluate__n_examples=4,
    )
    run(["git", "init", "-q"], root, env)
    commit(root, env, "project")
    return root


def copy_repo(source: Path, target: Path) -> Path:
    """A copy of a project repository that has run (git, DVC cache, outputs, its MLflow store):
    cheaper than running it again. The store's runs and experiments name their artifact
    folders by absolute path, so those move to the copy's."""
    shutil.copytree(source, target, symlinks=True)
    db = target / "mlflow.db"
    if db.exists():
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            tables = [
                t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                for _, column, kind, *_ in conn.execute(f'PRAGMA table_info("{table}")'):
                    if kind.upper().startswith(("VARCHAR", "TEXT")):
                        conn.execute(
                            f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?)',
                            (str(source), str(target)),
                        )
    return target


# What `make install` needs besides the pipeline itself.
SETUP_FILES = ["Makefile", "pyproject.toml", "requirements.lock", "README.md"]


def installed_clone(root: Path, archive: Path, sha256: str) -> Path:
    """The project at `root` (make_repo) as a user's clone after `make install`: the set-up
    files with their times (so `make install` sees it is done) and this venv linked in."""
    root.mkdir(parents=True)
    for name in SETUP_FILES:
        shutil.copy2(PROJECT / name, root / name)
    make_repo(root, archive, sha256, clean_env())
    (root / ".venv").symlink_to(Path(sys.prefix))
    return root


def env_without_venv() -> dict[str, str]:
    """A user's shell: no MLflow or DVC settings, and the project's venv not on PATH."""
    env = clean_env()
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    return env


def commit(root: Path, env: dict[str, str], message: str) -> None:
    run([*GIT, "add", "-A"], root, env)
    run([*GIT, "commit", "-q", "--allow-empty", "-m", message], root, env)


def tagged_blocks() -> list[tuple[str | None, str, str]]:
    """(the block's tag, its text, the page it is on), in order: README.md, then docs/*.md."""
    found = []
    for page in DOC_PAGES:
        for match in BLOCK.finditer(page.read_text()):
            found.append((match.group(1), match.group(2), page.relative_to(PROJECT).as_posix()))
    return found


def readme_blocks(tag: str) -> list[str]:
    """The text of every ```sh <tag> block, in order."""
    return [body for found, body, _ in tagged_blocks() if found == tag]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_url(
    url: str, proc: subprocess.Popen, log: Path, seconds: float = 120, context=None
) -> None:
    """Return once `url` answers; fail with the tail of `log` if `proc` ends or time runs out.
    `context` (an ssl.SSLContext) verifies an https server against a certificate of the test's."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{url} did not come up:\n" + log.read_text()[-3000:]
                ) from None
            time.sleep(0.5)


def start_script(
    script: str, cwd: Path, env: dict[str, str], log: Path, **popen
) -> subprocess.Popen:
    """`script` in `bash -euo pipefail`, its output to `log`: to a file, not a pipe, since DVC's
    queue workers and servers outlive the script and would hold a pipe open."""
    with open(log, "w") as out:
        return subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            **popen,
        )


@functools.cache
def new_store() -> Path:
    """An SQLite store as `mlflow server` leaves it on its first start (MLflow's tables and the
    Default experiment, its artifacts proxied), made once per process: a copy spares each new
    server or store the ~2 s of CPU that MLflow's schema migrations take."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(tempfile.mkdtemp(prefix="server-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "server.db"
    SqlAlchemyStore(f"sqlite:///{path}", "mlflow-artifacts:/").engine.dispose()
    return path


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 and a free port (by default an SQLite backend and
    artifacts proxied to a folder, both under `root`) that a test can stop and start again on
    the same port and store."""

    def __init__(self, root: Path, *extra: str, backend: str | None = None, env=None) -> None:
        self.root = root
        if backend is None and not (root / "server.db").exists():
            shutil.copyfile(new_store(), root / "server.db")
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        # As the docs start theirs: without MLflow's job runner (GenAI jobs, unused here).
        self.env = {**(env or clean_env()), **NO_JOB_RUNNER}
        self.cmd = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            backend or f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            *extra,
        ]
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        log = self.root / "server.log"
        with open(log, "a") as out:
            # Its own process group: the server's workers go down with it.
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        try:
            wait_for_url(f"{self.uri}/health", self.proc, log)
        except AssertionError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """A graceful stop: requests in flight may still be answered for a few seconds."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def hang(self) -> None:
        """Still listening, never answering: the kernel accepts connections for a stopped
        process, which reads none of them (a hung server, or one behind a dead link)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def kill(self) -> None:
        """Gone at once, as in a crash or a cut connection: nothing more is answered."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def mlflow_server(root: Path, *extra: str) -> Iterator[str]:
    """A started MlflowServer, stopped on exit; yields its URI."""
    server = MlflowServer(root, *extra).start()
    try:
        yield server.uri
    finally:
        server.stop()


def train_cmd(activation: str, params: Path, data: Path, out: Path) -> list[str]:
    """The train stage as a process: processed splits from `data`, models and results to `out`."""
    return [
        *(sys.executable, "-m", "pipeline.train", "--activation", activation),
        *("--params", str(params), "--data", str(data)),
        *("--models", str(out / "models"), "--results", str(out / "results")),
    ]


def stage_env(uri: str, **extra: str) -> dict[str, str]:
    """clean_env() logging to `uri`, unbuffered, with the project importable from anywhere."""
    return clean_env(
        MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1", PYTHONPATH=str(PROJECT), **extra
    )


PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


@contextlib.contextmanager
def postgres_cluster(user: str, password: str, database: str) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on 127.0.0.1 and a free port, its socket in its own
    folder, with `database` owned by `user`; yields the server's `host:port`. Stopped and
    removed on exit. initdb refuses root, so as root it runs as the `postgres` user."""
    if not (PG_BIN / "initdb").exists():
        import pytest

        pytest.skip(f"PostgreSQL's binaries are not in {PG_BIN} (set PG_BIN)")
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="pg-"))
    if as_owner:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    pwfile = folder / "pw"
    pwfile.write_text(password + "\n")
    if as_owner:
        shutil.chown(pwfile, "postgres", "postgres")
    env = clean_env(LC_ALL="C.UTF-8")

    def pg(*cmd: str) -> None:
        run([*as_owner, str(PG_BIN / cmd[0]), *cmd[1:]], folder, env, timeout=120)

    pg("initdb", "-D", str(data), "-U", user, f"--pwfile={pwfile}", "-A", "scram-sha-256")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    pg("pg_ctl", "-D", str(data), "-l", str(folder / "log"), "-o", options, "-w", "start")
    try:
        import psycopg

        conninfo = f"host=127.0.0.1 port={port} user={user} password={password}"
        with psycopg.connect(conninfo + " dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        yield f"127.0.0.1:{port}"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def logged_runs(uri: str | None = None) -> list:
    """Every run of the project's MLflow experiment, in the store at `uri` (default: current)."""
    import mlflow

    if uri:
        mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=["cifar10-activations"], output_format="list")


def stage_runs(runs: list) -> list:
    """The stage-level runs among MLflow runs (seed runs are nested under them)."""
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
