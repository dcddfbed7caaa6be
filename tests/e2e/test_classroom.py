"""docs/classroom.md run as written, over HTTPS as its last section sets it up: the teacher's
certificate, the teacher's server (basic-auth, SQLite) with the page's TLS option and the archive
served over HTTP, two student accounts made from a class list, each student's one command in
their own clone logging a tiny training against the certificate the teacher handed out, what each
account may and may not do checked with real requests, the pooled report built from the server
alone, and a student given another certificate, or none, stopped in one line before anything
runs. (The page's plain-HTTP server and accounts blocks run as written in test_prelab.py.)"""

from __future__ import annotations

import json
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
# Two at once show what a class needs (its own seed, experiment and rights each, one server for
# all) at two thirds of the cost of three. bob trains one more activation, as the page says a
# student may.
STUDENTS = ("alice", "bob")
CHOICE = {"bob": "tanh"}
# The option the page adds to step 1's `mlflow server` line, quoted from the page.
TLS_OPTION = re.compile(r'`(--uvicorn-opts "[^"`]+")`')


def as_user(uri: str, user: str, password: str) -> mlflow.MlflowClient:
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = user, password
    return mlflow.MlflowClient(tracking_uri=uri)


def refused(call) -> int:
    """The HTTP status a refused request got."""
    with pytest.raises(mlflow.exceptions.MlflowException) as caught:
        call()
    return caught.value.get_http_status_code()


def test_a_class_on_one_server_over_https(tmp_path, tiny_archive, monkeypatch):
    server_block, accounts_block, report_block = readme_blocks("classroom")
    (student_block,) = readme_blocks("classroom-student")
    certificate_block, client_block = readme_blocks("classroom-tls")
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
    (teacher / "class.txt").write_text("# lab group A\n" + "\n".join(STUDENTS) + "\n")
    run(["bash", "-euo", "pipefail", "-c", certificate_block], teacher, env)
    cert = teacher / CERT_FILE
    assert "PRIVATE KEY" in (teacher / "class-key.pem").read_text()
    with_tls = server_block.replace("mlflow server ", f"mlflow server {option} ", 1)
    assert with_tls != server_block
    servers = start_script(with_tls, teacher, env, tmp_path / "servers.log", start_new_session=True)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        wait_for_url(f"{uri}/health", servers, tmp_path / "servers.log", context=trusting)
        wait_for_url(f"http://127.0.0.1:{data_port}/", servers, tmp_path / "servers.log")
        # Step 2 over HTTPS, as the page says: https:// and the teacher's own certificate.
        accounts = accounts_block.replace(
            '"http://$CLASS_HOST:$PORT"', '"https://$CLASS_HOST:$PORT"'
        )
        assert accounts != accounts_block
        env_teacher = env | {"MLFLOW_TRACKING_SERVER_CERT_PATH": str(cert)}
        made = run(["bash", "-euo", "pipefail", "-c", accounts], teacher, env_teacher, timeout=120)
        passwords = dict(re.findall(r"^(\w+)\s+(\S+)\s+\d+\s+cifar10-activations-\1$", made, re.M))
        assert sorted(passwords) == sorted(STUDENTS), made
        assert re.search(r"^alice\s+(\S+)\s+42\s+cifar10-activations-alice$", made, re.M), made

        # Every student at once, each in their own clone, with the login and the copy of the
        # certificate the teacher handed out: step 3 with the page's two lines in place of its
        # MLFLOW_TRACKING_URI line.
        procs = {}
        for student in STUDENTS:
            given = tmp_path / f"{student}-downloads" / CERT_FILE
            given.parent.mkdir()
            shutil.copy2(cert, given)
            client = client_block.replace("teacher-host:8080", f"127.0.0.1:{port}")
            client = client.replace('"$HOME/class-cert.pem"', f'"{given}"')
            assert str(given) in client and uri in client
            script, replaced = re.subn(
                r"^export MLFLOW_TRACKING_URI=.*$",
                lambda _, text=client: text,
                student_block,
                flags=re.M,
            )
            assert replaced == 1
            script = script.replace("=alice", f"={student}").replace(
                "the password from the teacher", passwords[student]
            )
            if student in CHOICE:
                script = script.replace(
                    "classroom run", f"classroom run --activation {CHOICE[student]}"
                )
            home = installed_clone(tmp_path / student, *tiny_archive)
            procs[student] = start_script(script, home, env, tmp_path / f"{student}.log")
        for student, proc in procs.items():
            log = (tmp_path / f"{student}.log").read_text
            assert proc.wait(timeout=900) == 0, log()[-4000:]
            assert "Traceback" not in log()
            seed = 42 + STUDENTS.index(student)
            assert f"{student}: seed {seed};" in log()  # the seed came from the server
            assert f"Running stage 'train_relu@{seed}'" in log()
            assert "downloaded" in log() and "sha256 verified" in log()

        # The test's own requests check the server against the certificate too.
        monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))
        check_permissions(uri, passwords, tmp_path)
        check_refused_stage(uri, passwords["bob"], tmp_path / "bob", cert)
        check_refused_certificate(uri, passwords["alice"], tmp_path / "alice", tmp_path)

        # The accounts command again (as after adding a name), then the report.
        again = run(
            ["bash", "-euo", "pipefail", "-c", accounts + report_block], teacher, env_teacher
        )
        assert again.count("(unchanged)") == len(STUDENTS), again
        check_report(teacher / "reports/class", passwords)
        # It needs only read access: a student's login writes the same report.
        student_env = env_teacher | {"MLFLOW_TRACKING_USERNAME": "bob"}
        report = report_block.replace("reports/class", str(tmp_path / "by-bob"))
        run(
            ["bash", "-euo", "pipefail", "-c", student_export(uri, "bob", passwords) + report],
            teacher,
            student_env,
        )
        ours = (teacher / "reports/class/report.md").read_text()
        assert (tmp_path / "by-bob/report.md").read_text() == ours
    finally:
        os.killpg(servers.pid, signal.SIGTERM)
        servers.wait(timeout=30)


def student_export(uri: str, student: str, passwords: dict[str, str]) -> str:
    return (
        f"source .venv/bin/activate\nexport MLFLOW_TRACKING_URI={uri}\n"
        f"export MLFLOW_TRACKING_USERNAME={student} MLFLOW_TRACKING_PASSWORD='{passwords[student]}'\n"
    )


def check_permissions(uri: str, passwords: dict[str, str], tmp_path: Path) -> None:
    """A student logs their own runs and changes them; cannot change, tag or delete another
    student's runs or models; the teacher reads everything."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    try:
        teacher = as_user(uri, "teacher", TEACHER_PASSWORD)
        experiments = {
            s: teacher.get_experiment_by_name(f"cifar10-activations-{s}") for s in STUDENTS
        }
        runs = {s: teacher.search_runs([e.experiment_id]) for s, e in experiments.items()}
        for student, found in runs.items():  # the teacher reads every student's runs
            names = {r.info.run_name for r in found if r.info.status == "FINISHED"}
            seed = 42 + STUDENTS.index(student)
            assert {f"train_sigmoid@{seed}", f"train_relu@{seed}", "evaluate"} <= names, names
        alice_run = next(r for r in runs["alice"] if r.info.run_name == "train_relu@42")
        alice_model = "cifar10-activations-alice-relu"
        assert teacher.get_model_version(alice_model, "1").status == "READY"

        bob = as_user(uri, "bob", passwords["bob"])
        assert bob.get_run(alice_run.info.run_id).info.status == "FINISHED"  # reading is allowed
        attempts = {
            "tag a run": lambda: bob.set_tag(alice_run.info.run_id, "graded", "yes"),
            "log to a run": lambda: bob.log_metric(alice_run.info.run_id, "test_accuracy", 1.0),
            "delete a run": lambda: bob.delete_run(alice_run.info.run_id),
            "start a run in her experiment": lambda: bob.create_run(
                experiments["alice"].experiment_id
            ),
            "tag a model version": lambda: bob.set_model_version_tag(alice_model, "1", "k", "v"),
            "move the champion alias": lambda: bob.set_registered_model_alias(
                alice_model, "champion", "1"
            ),
            "delete a model": lambda: bob.delete_registered_model(alice_model),
        }
        for what, attempt in attempts.items():
            assert refused(attempt) == 403, what

        alice = as_user(uri, "alice", passwords["alice"])  # the same requests, on her own
        alice.set_tag(alice_run.info.run_id, "graded", "yes")
        alice.set_model_version_tag(alice_model, "1", "k", "v")
        scratch = alice.create_run(experiments["alice"].experiment_id)
        alice.delete_run(scratch.info.run_id)
        assert teacher.get_run(alice_run.info.run_id).data.tags["graded"] == "yes"
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def check_refused_stage(uri: str, password: str, bob_home: Path, cert: Path) -> None:
    """bob's stage aimed at alice's experiment stops before anything runs, in one line."""
    env = clean_env(
        MLFLOW_TRACKING_URI=uri,
        MLFLOW_TRACKING_USERNAME="bob",
        MLFLOW_TRACKING_PASSWORD=password,
        MLFLOW_TRACKING_SERVER_CERT_PATH=str(cert),
    )
    params = bob_home / "aimed-at-alice.yaml"
    text = (bob_home / "params.yaml").read_text()
    params.write_text(re.sub(r"experiment: \S+", "experiment: cifar10-activations-alice", text))
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pipeline.download", "--params", str(params)),
            *("--output", str(bob_home / "elsewhere.tar.gz")),
        ],
        cwd=bob_home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(errors) == 1 and "refused this user (403)" in errors[0], result.stderr
    assert not (bob_home / "elsewhere.tar.gz").exists()


def check_refused_certificate(uri: str, password: str, home: Path, tmp_path: Path) -> None:
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


def check_report(folder: Path, passwords: dict[str, str]) -> None:
    report = (folder / "report.md").read_text()
    assert "of 2 student(s) (alice, bob)" in report, report[:600]
    for student in STUDENTS:
        seed = 42 + STUDENTS.index(student)
        for activation in ("sigmoid", "relu"):
            assert re.search(rf"^\| {student}\s+\| {seed}\s+\| {activation}\s+\|", report, re.M)
    assert re.search(r"^\| bob\s+\| 43\s+\| tanh\s+\|", report, re.M)
    # Two students, two seeds: the paired difference pools both.
    assert re.search(r"over 2 pair\(s\)", report), report
    for figure in ("curves.png", "escape.png", "accuracy.png"):
        assert (folder / "figures" / figure).stat().st_size > 0
    assert json.dumps(passwords["alice"]) not in report


def test_a_room_without_logins(tmp_path, tiny_archive):
    """`accounts --no-logins` against a server without authentication: each student's
    experiment, with their seed and the class's archive, and nothing else."""
    from project import MlflowServer

    from pipeline.classroom import assignment
    from pipeline.classroom_accounts import SEED_TAG, URL_TAG

    (tmp_path / "class.txt").write_text("ana\nben\n")
    with_server = MlflowServer(tmp_path).start()
    try:
        made = run(
            [
                *(sys.executable, "-m", "pipeline.classroom", "--params"),
                *(str(PROJECT / "params.yaml"), "accounts", "class.txt", "--no-logins"),
                *("--archive", str(tiny_archive[0]), "--data-url", "http://room:8000/a.tar.gz"),
            ],
            tmp_path,
            clean_env(MLFLOW_TRACKING_URI=with_server.uri, PYTHONPATH=str(PROJECT)),
        )
        assert re.search(r"^ben\s+\(no logins\)\s+43\s+cifar10-activations-ben$", made, re.M), made
        experiment, tags = assignment(with_server.uri, "ben", "cifar10-activations")
        assert experiment == "cifar10-activations-ben"
        assert tags[SEED_TAG] == "43" and tags[URL_TAG] == "http://room:8000/a.tar.gz"
    finally:
        with_server.kill()
