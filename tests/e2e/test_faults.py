"""Faults on real processes: signals during training, a training killed without a word, an
unreachable tracking server, and two stages logging to one SQLite store at once."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from pathlib import Path

import mlflow
import pytest
from project import free_port, logged_runs, mlflow_server, stage_env, train_cmd, write_params


def params_with_epochs(workspace: Path, tmp_path: Path, epochs: int) -> Path:
    return write_params(tmp_path / "params.yaml", workspace / "params.yaml", train__epochs=epochs)


def train_process(activation: str, params: Path, workspace: Path, out: Path) -> list[str]:
    return train_cmd(activation, params, workspace / "processed", out)


def train_once(workspace: Path, tmp_path: Path, uri: str, timeout: float):
    """One epoch of the relu stage logging to `uri`, as a process; its CompletedProcess."""
    return subprocess.run(
        train_process("relu", params_with_epochs(workspace, tmp_path, 1), workspace, tmp_path),
        env=stage_env(uri),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def silent_server() -> tuple[socket.socket, int]:
    """Accepts connections and never answers: a server that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize(
    ("kind", "reason"), [("refused", "Connection refused"), ("silent", "(timed out)")]
)
@pytest.mark.servers
def test_unreachable_tracking_server_fails_fast_before_training(workspace, tmp_path, kind, reason):
    """The stage gives up after one health check (HEALTH_TIMEOUT_S for a silent server, at once
    for a refused one; test_tracking checks that decision), before any training and before
    MLflow's retries: the reason in its one line says which check failed."""
    server = None
    if kind == "refused":
        port = free_port()  # nothing listens there: the connection is refused
    else:
        server, port = silent_server()
    uri = f"http://127.0.0.1:{port}"
    try:
        # The timeout only keeps a hang from lasting: a busy machine may be slow to get there.
        result = train_once(workspace, tmp_path, uri, timeout=600)
    finally:
        if server:
            server.close()
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert errors[0].startswith(f"error: the MLflow tracking server {uri} cannot be reached (")
    assert reason in errors[0] and errors[0].endswith("nothing was run"), errors[0]
    assert "Traceback" not in result.stderr
    assert "Epoch 1/" not in result.stdout
    assert not (tmp_path / "models").exists()


def test_two_stages_logging_to_one_sqlite_store_at_once(workspace, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # fresh: both processes race to create it
    epochs = 2
    params = params_with_epochs(workspace, tmp_path, epochs)
    procs = [
        subprocess.Popen(
            train_process(a, params, workspace, tmp_path / a),
            env=stage_env(uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for a in ("sigmoid", "relu")
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-2000:]
        assert "database is locked" not in output
    runs = logged_runs(uri)
    assert sorted(r.info.run_name for r in runs) == ["train_relu@42", "train_sigmoid@42"]
    client = mlflow.MlflowClient()
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert len(client.get_metric_history(run.info.run_id, key)) == epochs, key
        grads = client.get_metric_history(run.info.run_id, "grad_norm/dense/kernel")
        assert sorted(m.step for m in grads) == list(range(epochs + 1))


@pytest.mark.servers
def test_a_server_that_rejects_the_host_header_gets_an_error_naming_allowed_hosts(
    workspace, tmp_path
):
    """MLflow 3.17 answers /health to any host but the API only to allowed ones: the stage
    must say so, not blame MLFLOW_TRACKING_URI."""
    with mlflow_server(tmp_path, "--allowed-hosts", "some-other-host:5000") as uri:
        result = train_once(workspace, tmp_path, uri, timeout=300)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(errors) == 1 and "--allowed-hosts including 127.0.0.1:" in errors[0], errors
    assert "Traceback" not in result.stderr and "Epoch 1/" not in result.stdout


def start_training(
    activation: str, params: Path, workspace: Path, out: Path, uri: str
) -> tuple[subprocess.Popen, list[str]]:
    """A train stage as a process, once its run is open and training is under way (however long
    a busy machine takes: a signal sent on a clock could arrive before the run is even open),
    and the lines it printed until then."""
    proc = subprocess.Popen(
        train_process(activation, params, workspace, out),
        env=stage_env(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("Epoch 2/"):
            return proc, seen
    raise AssertionError(f"{activation} never reached epoch 2: {proc.wait()}")


def test_a_killed_training_is_marked_killed_and_a_live_one_is_left_alone_until_sigterm(
    workspace, tmp_path
):
    """SIGKILL leaves a ghost run that the next training's start marks KILLED; a live training
    is left alone by a third one's start; SIGTERM (what `kill` or a batch system's stop sends;
    Ctrl-C, SIGINT, is test_dvc_repro's) then ends the live one KILLED, writing nothing."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    long = params_with_epochs(workspace, tmp_path, 500)
    # SIGKILL, as the OOM killer sends it: the process gets no chance to end its run.
    ghost, _ = start_training("relu", long, workspace, tmp_path / "ghost", uri)
    ghost.kill()
    ghost.wait(timeout=30)
    (run,) = logged_runs(uri)
    assert run.info.status == "RUNNING"  # the ghost
    # A second training starts and stays alive while a third one starts beside it.
    live, seen = start_training("sigmoid", long, workspace, tmp_path / "live", uri)
    try:
        (tmp_path / "third").mkdir()
        third = train_once(workspace, tmp_path / "third", uri, timeout=300)
        assert third.returncode == 0, third.stderr[-2000:]
        runs = {r.info.run_id: r for r in logged_runs(uri)}
        assert runs[run.info.run_id].info.status == "KILLED"
        assert runs[run.info.run_id].data.tags["process.reaped"]
        statuses = sorted((r.info.run_name, r.info.status) for r in runs.values())
        assert statuses == [
            ("train_relu@42", "FINISHED"),  # the third
            ("train_relu@42", "KILLED"),  # the ghost, marked by the live one's start
            ("train_sigmoid@42", "RUNNING"),  # alive throughout: untouched by the third's start
        ]
        live.send_signal(signal.SIGTERM)
        rest, _ = live.communicate(timeout=60)
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate()
    output = "".join(seen) + rest
    assert live.returncode == 130, output[-2000:]
    assert "Traceback" not in output
    assert "error: interrupted" in output
    statuses = sorted((r.info.run_name, r.info.status) for r in logged_runs(uri))
    assert statuses == [
        ("train_relu@42", "FINISHED"),
        ("train_relu@42", "KILLED"),
        ("train_sigmoid@42", "KILLED"),  # ended by SIGTERM
    ]
    live_out = tmp_path / "live"
    assert not (live_out / "models" / "sigmoid").exists()
    assert not (live_out / "results" / "sigmoid").exists()
    leftovers = list((live_out / "models").glob("*")) if (live_out / "models").exists() else []
    assert leftovers == []
