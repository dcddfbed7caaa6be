"""docs/classroom.md's server over HTTPS, run as written: the teacher's certificate, step 1's
servers with the page's TLS option, the accounts made over HTTPS, and a student's run checked
against the certificate the teacher handed out. A student given another certificate, or none, is
stopped in one line before anything runs, by the student's command and by a stage alike."""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from project import (
    PROJECT,
    clean_env,
    env_without_venv,
    free_port,
    installed_clone,
    readme_blocks,
    run,
    start_script,
    wait_for_url,
)

from pipeline.certificate import CERT_FILE, write_certificate

pytestmark = pytest.mark.servers

TEACHER_PASSWORD = "teacher-secret-for-tests"
# The option the page adds to step 1's `mlflow server` line, quoted from the page.
TLS_OPTION = re.compile(r'`(--uvicorn-opts "[^"`]+")`')


def test_a_class_over_https(tmp_path, tiny_archive, monkeypatch):
    certificate_block, client_block = readme_blocks("classroom-tls")
    server_block, accounts_block, _ = readme_blocks("classroom")
    (student_block,) = readme_blocks("classroom-student")
    (option,) = TLS_OPTION.findall((PROJECT / "docs/classroom.md").read_text())

    served = tmp_path / "served"
    served.mkdir()
    archive = served / "cifar-10-python.tar.gz"
    shutil.copy2(tiny_archive[0], archive)
    port, data_port = free_port(), free_port()
    uri = f"https://127.0.0.1:{port}"
    values = {
        "CLASS_HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_PORT": str(data_port),
        "TEACHER_PASSWORD": TEACHER_PASSWORD,
        "ARCHIVE": str(archive),
    }
    env = env_without_venv() | values
    teacher = installed_clone(tmp_path / "teacher", *tiny_archive)
    (teacher / "class.txt").write_text("alice\n")
    run(["bash", "-euo", "pipefail", "-c", certificate_block], teacher, env)
    cert = teacher / CERT_FILE
    assert "PRIVATE KEY" in (teacher / "class-key.pem").read_text()

    with_tls = server_block.replace("mlflow server ", f"mlflow server {option} ", 1)
    assert with_tls != server_block
    log = tmp_path / "servers.log"
    servers = start_script(with_tls, teacher, env, log, start_new_session=True)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        wait_for_url(f"{uri}/health", servers, log, context=trusting)

        # Step 2 over HTTPS, as the page says: https:// and the teacher's own certificate.
        accounts = accounts_block.replace(
            '"http://$CLASS_HOST:$PORT"', '"https://$CLASS_HOST:$PORT"'
        )
        assert accounts != accounts_block
        teacher_env = env | {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(teacher / CERT_FILE)}
        made = run(["bash", "-euo", "pipefail", "-c", accounts], teacher, teacher_env, timeout=120)
        password = re.search(r"^alice\s+(\S+)\s+42\s+cifar10-activations-alice$", made, re.M)
        assert password, made

        # Step 3 with the page's two lines in place of its MLFLOW_TRACKING_URI line.
        given = tmp_path / "alice-downloads" / CERT_FILE  # the copy the teacher handed out
        given.parent.mkdir()
        shutil.copy2(cert, given)
        client = client_block.replace("teacher-host:8080", f"127.0.0.1:{port}")
        client = client.replace('"$HOME/class-cert.pem"', f'"{given}"')
        assert str(given) in client and f"https://127.0.0.1:{port}" in client
        script, replaced = re.subn(
            r"^export MLFLOW_TRACKING_URI=.*$", lambda _: client, student_block, flags=re.M
        )
        assert replaced == 1
        script = script.replace("the password from the teacher", password.group(1))
        alice = installed_clone(tmp_path / "alice", *tiny_archive)
        proc = start_script(script, alice, env, tmp_path / "alice.log")
        output = (tmp_path / "alice.log").read_text
        assert proc.wait(timeout=900) == 0, output()[-4000:]
        assert "Traceback" not in output()
        assert "alice: seed 42;" in output() and "Running stage 'train_relu@42'" in output()

        # Her runs and their models reached the server over HTTPS.
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "teacher")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", TEACHER_PASSWORD)
        client_api = mlflow.MlflowClient(tracking_uri=uri)
        experiment = client_api.get_experiment_by_name("cifar10-activations-alice")
        finished = {
            r.info.run_name
            for r in client_api.search_runs([experiment.experiment_id])
            if r.info.status == "FINISHED"
        }
        assert {"train_sigmoid@42", "train_relu@42", "evaluate"} <= finished, finished
        assert client_api.get_model_version("cifar10-activations-alice-relu", "1").status == "READY"

        check_refused(uri, password.group(1), alice, tmp_path)
    finally:
        os.killpg(servers.pid, signal.SIGTERM)
        servers.wait(timeout=30)


def check_refused(uri: str, password: str, home: Path, tmp_path: Path) -> None:
    """Another certificate (a new pair made for the same address), or none: one line naming
    MLFLOW_TRACKING_SERVER_CERT_PATH, from the student's command and from a stage."""
    other = tmp_path / "other"
    write_certificate(other, ["127.0.0.1"])
    login = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": password}
    cases = {
        "another certificate": (
            {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(other / CERT_FILE)},
            f"presents a certificate other than {other / CERT_FILE}",
        ),
        "none": ({}, "presents a certificate this machine does not trust"),
    }
    commands = {
        "the student's command": [sys.executable, "-m", "pipeline.classroom", "run"],
        "a stage": [
            *(sys.executable, "-m", "pipeline.download"),
            *("--output", str(home / "elsewhere.tar.gz")),
        ],
    }
    for case, (cert, says) in cases.items():
        env = clean_env(MLFLOW_TRACKING_URI=uri, **login, **cert)
        for what, command in commands.items():
            result = subprocess.run(
                command, cwd=home, env=env, capture_output=True, text=True, timeout=600
            )
            errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
            assert result.returncode == 1, (case, what, result.stderr[-3000:])
            assert "Traceback" not in result.stderr, (case, what, result.stderr[-3000:])
            assert len(errors) == 1 and says in errors[0], (case, what, result.stderr[-3000:])
            assert "set MLFLOW_TRACKING_SERVER_CERT_PATH to it, nothing was run" in errors[0]
            assert "Running stage" not in result.stdout + result.stderr
    assert not (home / "elsewhere.tar.gz").exists()
