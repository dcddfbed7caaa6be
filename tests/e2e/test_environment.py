"""The machine gets in the way: a full disk, a read-only folder, an MLflow store that is read-only,
locked or corrupt. Real file systems (small tmpfs mounts) and a real SQLite lock; each failure is
one line naming the path and the fix, exit 1, nothing partial, earlier outputs untouched."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from project import logged_runs, new_store, stage_env, train_cmd, write_params


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real file system of `size` at `path` (needs root, as CI and the dev machines have)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def one_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def preprocess(archive: Path, params: Path, output: Path, uri: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipeline.preprocess", "--params", str(params)]
    cmd += ["--archive", str(archive), "--output", str(output)]
    return subprocess.run(cmd, env=stage_env(uri), capture_output=True, text=True, timeout=300)


def test_a_full_disk_stops_training_in_one_line(workspace, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = write_params(tmp_path / "params.yaml", workspace / "params.yaml", train__epochs=1)
    out = tmp_path / "out"
    with tmpfs(out / "models", "1m") as models:  # a model is about 11 MB
        earlier = models / "earlier.txt"
        earlier.write_text("an earlier output")
        result = subprocess.run(
            train_cmd("relu", params, workspace / "processed", out),
            env=stage_env(uri),
            capture_output=True,
            text=True,
            timeout=600,
        )
        line = one_error(result)
        target = models / "relu" / "seed42.keras"
        assert line.startswith(f"error: cannot write {target}: no space left on the device")
        assert "free some space" in line
        assert earlier.read_text() == "an earlier output"
        left = sorted(p.relative_to(models).as_posix() for p in models.rglob("*"))
        assert left == ["earlier.txt", "relu"], left  # no partial model, no temporary folder
    (run,) = logged_runs(uri)
    assert run.info.status == "FAILED"


def test_a_read_only_output_folder_is_named(tiny_archive, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    params = write_params(tmp_path / "params.yaml", data__val_size=50)
    with tmpfs(tmp_path / "data", "4m") as data:
        (data / "processed").mkdir()
        (data / "processed" / "meta.json").write_text("{}")
        read_only(data)
        line = one_error(preprocess(tiny_archive[0], params, data / "processed", uri))
        assert line.startswith(f"error: cannot write {data / 'processed'}: the file system is")
        assert (data / "processed" / "meta.json").read_text() == "{}"


def store_refuses(tiny_archive, tmp_path: Path, db: Path) -> str:
    params = write_params(tmp_path / "params.yaml", data__val_size=50)
    out = tmp_path / "processed"
    line = one_error(preprocess(tiny_archive[0], params, out, f"sqlite:///{db}"))
    assert not out.exists()
    return line


def a_store(db: Path) -> None:
    """An MLflow store with an experiment, that this process holds no connection to: a copy of
    a new store, the experiment added through a connection closed at once."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    shutil.copyfile(new_store(), db)
    store = SqlAlchemyStore(f"sqlite:///{db}", (db.parent / "mlruns").as_uri())
    store.create_experiment("x")
    store.engine.dispose()


def test_a_read_only_store_is_named(tiny_archive, tmp_path):
    with tmpfs(tmp_path / "store", "16m") as store:
        a_store(store / "mlflow.db")
        read_only(store)
        line = store_refuses(tiny_archive, tmp_path, store / "mlflow.db")
    assert line.startswith(f"error: the MLflow store {store / 'mlflow.db'} is read-only;")


def test_a_corrupt_store_is_named(tiny_archive, tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database at all " * 1000)
    line = store_refuses(tiny_archive, tmp_path, db)
    assert line.startswith(f"error: the MLflow store {db} is not an SQLite database;")
    assert f"mv {db} {db}.broken" in line


def test_a_locked_store_is_named(tiny_archive, tmp_path):
    db = tmp_path / "mlflow.db"
    a_store(db)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:  # another process's long write: an exclusive lock on the database
        connection = sqlite3.connect(db, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(120)
        connection.execute("ROLLBACK")
        connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert locked.wait(30)
    try:
        line = store_refuses(tiny_archive, tmp_path, db)
    finally:
        release.set()
        holder.join(timeout=30)
    assert line.startswith(f"error: the MLflow store {db} is locked by another process;")


def test_a_store_held_mid_write_is_named(tiny_archive, tmp_path):
    """Another process stopped (Ctrl-Z) in the middle of a write: reads still work, so the
    store opens, and the stage is refused only when it starts its run."""
    db = tmp_path / "mlflow.db"
    a_store(db)
    connection = sqlite3.connect(db, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")  # the write lock, as a writer holds it
    connection.execute("UPDATE experiments SET name = name")
    try:
        line = store_refuses(tiny_archive, tmp_path, db)
    finally:
        connection.execute("ROLLBACK")
        connection.close()
    assert line.startswith(f"error: the MLflow store {db} is locked by another process;")


# Root ignores permission bits; without these two capabilities it obeys them like any user.
WITHOUT_DAC = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
    "--",
]


def test_an_output_folder_without_write_permission_is_named(tiny_archive, tmp_path):
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop root's permission override")
    params = write_params(tmp_path / "params.yaml", data__val_size=50)
    locked = tmp_path / "data"
    locked.mkdir()
    (locked / "earlier.txt").write_text("an earlier output")
    locked.chmod(0o555)
    try:
        cmd = [*WITHOUT_DAC, sys.executable, "-m", "pipeline.preprocess"]
        cmd += ["--params", str(params), "--archive", str(tiny_archive[0])]
        cmd += ["--output", str(locked / "processed")]
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        result = subprocess.run(
            cmd, env=stage_env(uri), capture_output=True, text=True, timeout=300
        )
        line = one_error(result)
    finally:
        locked.chmod(0o755)
    assert line.startswith(f"error: cannot write {locked / 'processed'}: permission denied;")
    assert "make the folder writable" in line
    assert sorted(p.name for p in locked.iterdir()) == ["earlier.txt"]
