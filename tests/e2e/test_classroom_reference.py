"""docs/classroom.md's finished run to pull, run as written: the teacher runs the project on the
class's archive, commits it to a branch and pushes its DVC cache to a folder beside the archive,
which `python -m http.server` serves; a student fetches the branch and pulls the cache over
http://, and `dvc repro` in their clone trains nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from project import (
    clean_env,
    env_without_venv,
    free_port,
    installed_clone,
    readme_blocks,
    run,
    set_params,
    wait_for_url,
)

pytestmark = pytest.mark.servers

# Names git needs for the teacher's commit, whatever the machine's git config says.
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.org",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.org",
}
OUTPUTS = ["models/sigmoid/seed42.keras", "models/relu/seed42.keras", "reports/report.md"]


def test_a_student_pulls_the_teachers_run_and_trains_nothing(tmp_path, tiny_archive):
    teacher_block, student_block = readme_blocks("classroom-reference")
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "cifar-10-python.tar.gz"
    shutil.copy2(tiny_archive[0], archive)
    data_port = free_port()
    values = {"CLASS_HOST": "127.0.0.1", "DATA_PORT": str(data_port), "ARCHIVE": str(archive)}
    env = env_without_venv() | IDENTITY
    # The archive's web server of step 1, which serves the reference beside the archive.
    log = tmp_path / "http.log"
    with open(log, "w") as out:
        web = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(data_port), "--bind", "127.0.0.1"],
            cwd=served,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_url(f"http://127.0.0.1:{data_port}/", web, log)
        teacher = installed_clone(tmp_path / "teacher", *tiny_archive)
        trained = run(["bash", "-euo", "pipefail", "-c", teacher_block], teacher, env | values)
        assert "Running stage 'train_relu@42'" in trained, trained[-4000:]
        assert (served / "reference.git" / "info" / "refs").is_file()

        student = installed_clone(tmp_path / "student", *tiny_archive)
        set_params(student, train__epochs=2)  # a change of the student's own, to be set aside
        script = student_block.replace("teacher-host:8000", f"127.0.0.1:{data_port}")
        assert script != student_block
        output = run(["bash", "-euo", "pipefail", "-c", script], student, env, timeout=600)
        assert "Running stage" not in output, output[-4000:]
        for stage in ("train_sigmoid@42", "train_relu@42", "evaluate", "report"):
            assert f"Stage '{stage}' didn't change, skipping" in output, output[-4000:]
        for path in OUTPUTS:
            assert (student / path).read_bytes() == (teacher / path).read_bytes(), path
        assert "up to date" in run(["dvc", "status"], student, clean_env())

        # And back to the student's own work, as the page says.
        run(["bash", "-c", "git switch - && git stash pop"], student, env)
        assert "epochs: 2" in (student / "params.yaml").read_text()
    finally:
        web.terminate()
        web.wait(timeout=30)
