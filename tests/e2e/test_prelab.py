"""docs/classroom.md's pre-lab check run as written, against the class's servers started as the
page starts them (basic-auth MLflow, the archive over HTTP, accounts from a class list): a
passing run for a student and for the teacher, and each failure in its one line."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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

from pipeline import prelab

pytestmark = pytest.mark.servers

TEACHER_PASSWORD = "teacher-secret-for-tests"
ZEROS = "0" * 64
SERVER = "http://teacher-host:8080"  # never reached: the install fails first


@dataclass
class Room:
    uri: str
    data_url: str
    env: dict[str, str]  # the teacher's values of step 1, in a user's shell
    teacher: Path
    student: Path
    password: str  # alice's


@pytest.fixture(scope="module")
def room(tmp_path_factory, tiny_archive):
    tmp = tmp_path_factory.mktemp("prelab")
    server_block, accounts_block, _ = readme_blocks("classroom")
    served = tmp / "served"
    served.mkdir()
    archive = served / "cifar-10-python.tar.gz"
    shutil.copy2(tiny_archive[0], archive)
    port, data_port = free_port(), free_port()
    env = env_without_venv() | {
        "CLASS_HOST": "127.0.0.1",
        "PORT": str(port),
        "DATA_PORT": str(data_port),
        "TEACHER_PASSWORD": TEACHER_PASSWORD,
        "ARCHIVE": str(archive),
    }
    teacher = installed_clone(tmp / "teacher", *tiny_archive)
    (teacher / "class.txt").write_text("alice\nbob\n")
    student = installed_clone(tmp / "alice", *tiny_archive)
    # The student's own params.yaml, as cloned: the estimate is of the default run.
    shutil.copy2(PROJECT / "params.yaml", student / "params.yaml")
    log = tmp / "servers.log"
    servers = start_script(server_block, teacher, env, log, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        wait_for_url(f"{uri}/health", servers, log)
        wait_for_url(f"http://127.0.0.1:{data_port}/", servers, log)
        made = run(["bash", "-euo", "pipefail", "-c", accounts_block], teacher, env, timeout=120)
        password = re.search(r"^alice\s+(\S+)\s+42\s", made, re.M).group(1)
        data_url = f"http://127.0.0.1:{data_port}/cifar-10-python.tar.gz"
        yield Room(uri, data_url, env, teacher, student, password)
    finally:
        os.killpg(servers.pid, signal.SIGTERM)
        servers.wait(timeout=30)


def checked(script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """(exit status, output) of a block that ends with the check; no traceback, ever."""
    result = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    print(output)  # shown with `pytest -s`: the lines the docs quote
    assert "Traceback" not in output, output
    return result.returncode, output


def lines(output: str) -> dict[str, str]:
    """Each check's line, by its name."""
    found = re.findall(r"^(ok|FAIL|skip)\s+(\w+)\s+(.*)$", output, re.M)
    return {name: f"{status} {detail}" for status, name, detail in found}


def student_script(room: Room, password: str | None = None, uri: str | None = None) -> str:
    (block,) = readme_blocks("prelab")
    return block.replace("http://teacher-host:8080", uri or room.uri).replace(
        "the password from the teacher", password or room.password
    )


def test_a_ready_student(room):
    status, output = checked(student_script(room), room.student, room.env)
    assert status == 0, output
    found = lines(output)
    assert list(found) == ["python", "install", "speed", "server", "login", "archive", "disk"]
    assert all(line.startswith("ok ") for line in found.values()), output
    # The default run, counted from the student's params.yaml.
    assert "2 models × 10 epochs × 704 steps" in found["speed"]
    assert "'alice' accepted; seed 42, experiment cifar10-activations-alice" in found["login"]
    assert f"{room.data_url}: sha256 " in found["archive"]  # the address came from the server
    assert output.rstrip().endswith("all 7 checks passed: this machine is ready for the lab")


def test_a_wrong_password_and_a_wrong_checksum(room):
    script = student_script(room, password="not-the-password").replace(
        "prelab student", f"prelab student --data-url {room.data_url} --sha256 {ZEROS}"
    )
    status, output = checked(script, room.student, room.env)
    assert status == 1, output
    found = lines(output)
    assert found["login"] == "FAIL wrong user name or password for 'alice': ask your teacher"
    assert re.fullmatch(
        rf"FAIL {re.escape(room.data_url)} has sha256 [0-9a-f]{{12}}…, not 000000000000…: check "
        r"--sha256 with your teacher, or tell them the served file is not the class's",
        found["archive"],
    ), found["archive"]
    assert found["server"].startswith("ok ") and found["disk"].startswith("ok ")
    assert "2 of 7 checks failed:" in output


def test_an_unreachable_server_and_archive(room):
    dead = f"http://127.0.0.1:{free_port()}"
    script = student_script(room, uri=dead).replace(
        "prelab student",
        f"prelab student --data-url {dead}/cifar-10-python.tar.gz --sha256 {ZEROS}",
    )
    status, output = checked(script, room.student, room.env)
    assert status == 1, output
    found = lines(output)
    assert found["server"] == (
        f"FAIL cannot reach {dead} (connection refused): check the address with your teacher "
        "(host and port exactly as given) and that this machine is on the room's network"
    )
    assert found["login"] == "skip not checked: the server did not answer"
    assert found["archive"] == (
        f"FAIL cannot reach {dead}/cifar-10-python.tar.gz (connection refused): check the "
        "address with your teacher and that their data server is running"
    )
    assert "2 of 7 checks failed, 1 not run:" in output


def test_an_old_python_and_a_full_disk(room, monkeypatch, capsys):
    """Posing as another machine through the check's own parameters: Python 3.10, 100 MB free."""
    monkeypatch.chdir(room.student)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", room.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", room.password)
    machine = prelab.Machine(version_info=(3, 10, 12), free_bytes=lambda folder: 100_000_000)
    # An archive that does not answer: the need is counted with the canonical archive's size.
    dead = f"http://127.0.0.1:{free_port()}/cifar-10-python.tar.gz"
    argv = ["student", "--data-url", dead, "--sha256", ZEROS]
    assert prelab.run(argv, machine) == 1
    output = capsys.readouterr().out
    with capsys.disabled():
        print(output)
    found = lines(output)
    assert found["python"] == (
        "FAIL Python 3.10.12 is too old: install Python 3.11 to 3.13, then rebuild the "
        "environment with it: `make clean && make install PYTHON=python3.11`"
    )
    need = re.fullmatch(
        rf"FAIL 100 MB free in {re.escape(str(room.student))}, but `make run` writes about "
        r"(\d+) MB: free (\d+) MB there, or move the project to a larger disk",
        found["disk"],
    )
    assert need, found["disk"]
    assert int(need.group(1)) - int(need.group(2)) == 100
    assert [n for n, line in found.items() if line.startswith("FAIL")] == [
        "python",
        "archive",
        "disk",
    ]


def teacher_script(extra: str = "") -> str:
    (block,) = readme_blocks("prelab-teacher")
    return block.rstrip() + (f" {extra}" if extra else "")


def test_a_ready_teacher(room):
    status, output = checked(teacher_script(), room.teacher, room.env)
    assert status == 0, output
    found = lines(output)
    assert list(found) == ["python", "install", "archive", "server", "login", "data", "disk"]
    assert all(line.startswith("ok ") for line in found.values()), output
    assert found["login"] == "ok 'teacher' is the server's admin"
    assert "the models of 30 students take about" in found["disk"]


def test_a_teacher_s_wrong_password_checksum_and_data_server(room):
    data_port = free_port()
    env = room.env | {"TEACHER_PASSWORD": "not-the-password", "DATA_PORT": str(data_port)}
    status, output = checked(teacher_script(f"--sha256 {ZEROS}"), room.teacher, env)
    assert status == 1, output
    found = lines(output)
    archive = room.env["ARCHIVE"]
    assert re.fullmatch(
        rf"FAIL {re.escape(archive)} has sha256 [0-9a-f]{{12}}…, not 000000000000…: download the "
        r"archive again, or give --sha256 of the copy you mean the class to use",
        found["archive"],
    ), found["archive"]
    assert found["login"] == (
        "FAIL wrong user name or password for 'teacher': the admin's password "
        "(MLFLOW_AUTH_ADMIN_PASSWORD)"
    )
    assert found["data"] == (
        f"FAIL http://127.0.0.1:{data_port}/cifar-10-python.tar.gz does not answer (connection "
        "refused): start the data server (section 1), then check again"
    )
    assert found["server"].startswith("ok ")
    assert "3 of 7 checks failed:" in output


def test_without_the_packages(tmp_path):
    """Run by a Python that has none of the packages (the venv's own base interpreter): the
    install fails in one line, the checks that need it are not run, and nothing crashes."""
    base = getattr(sys, "_base_executable", sys.executable)
    if subprocess.run([base, "-c", "import tensorflow"], capture_output=True).returncode == 0:
        pytest.skip(f"{base} has TensorFlow: no interpreter without the packages here")
    shutil.copy2(PROJECT / "params.yaml", tmp_path / "params.yaml")
    env = clean_env(PYTHONPATH=str(PROJECT), MLFLOW_TRACKING_PASSWORD="x")
    result = subprocess.run(
        [*(base, "-m", "pipeline.prelab", "student", "--user", "alice"), "--server", SERVER],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 1 and "Traceback" not in output, output
    found = lines(output)
    assert re.fullmatch(
        r"FAIL cannot import tensorflow( \(and \d more\))?: ModuleNotFoundError: No module named "
        r"'tensorflow'; run `make install` in the project's folder, then "
        r"`source \.venv/bin/activate`",
        found["install"],
    ), found["install"]
    assert [n for n, line in found.items() if line.startswith("skip")] == [
        "speed",
        "server",
        "login",
        "archive",
        "disk",
    ]
