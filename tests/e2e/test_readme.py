"""The shell commands of README.md and docs/*.md, read from the pages, run as written on the
tiny archive.

Every untagged ```sh block runs, in order (README first, then docs/ in name order), in one shell,
in a copy of the project whose params are shrunk to the tiny archive and one epoch (the pages' own
`-S` overrides still apply on top). A block fenced as ```sh no-test is skipped and must say why
in a comment on its first line; team-server, queue and machines blocks run in tests of their own.
The venv is not on PATH: the README's own set-up has to put it there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from project import (
    OWN_TESTS,
    PROJECT,
    env_without_venv,
    installed_clone,
    readme_blocks,
    start_script,
    tagged_blocks,
)

# What the README writes for the user's own copy of the archive.
ARCHIVE_PLACEHOLDER = "/absolute/path/to/cifar-10-python.tar.gz"
SHA_PLACEHOLDER = "<sha256 of that file>"


def blocks() -> list[tuple[bool, str, str]]:
    """(runs in this test?, the block's text, the page it is on)."""
    return [(tag is None, body, page) for tag, body, page in tagged_blocks()]


def test_every_skipped_block_says_why():
    tags = {tag for tag, _, _ in tagged_blocks()} - {None}
    assert tags <= OWN_TESTS | {"no-test"}, f"unknown block tags {tags - OWN_TESTS}"
    for tag in OWN_TESTS:
        assert readme_blocks(tag), f"no ```sh {tag} block left for its test"
    for tag, body, page in tagged_blocks():
        if tag == "no-test":
            # Why, for the reader: "# placeholders: …", "# needs the internet: …".
            assert re.match(r"# [A-Za-z0-9 ]+: \S", body), (
                f"a no-test block in {page} must say why on its first line (# reason: …):\n{body}"
            )
    assert any(runs for runs, _, page in blocks() if page == "README.md")


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path, tiny_archive):
    stamp = Path(sys.prefix) / ".installed"
    newest = max((PROJECT / n).stat().st_mtime for n in ("pyproject.toml", "requirements.lock"))
    if Path(sys.prefix).resolve() != (PROJECT / ".venv").resolve() or not stamp.exists():
        pytest.skip("needs the venv `make install` made; run `make test`")
    if stamp.stat().st_mtime < newest:
        # The clone's `make install` would reinstall into this very venv, from the clone.
        pytest.skip(
            "the venv is older than requirements.lock; run `make test`, which installs first"
        )
    archive, sha256 = tiny_archive
    env = env_without_venv()
    assert shutil.which("dvc", path=env["PATH"]) is None or "venv" not in shutil.which(
        "dvc", path=env["PATH"]
    )
    root = installed_clone(tmp_path / "clone", archive, sha256)
    script = "\n".join(body for runs, body, _ in blocks() if runs)
    script = script.replace(ARCHIVE_PLACEHOLDER, str(archive)).replace(SHA_PLACEHOLDER, sha256)
    log = tmp_path / "readme.log"
    try:
        returncode = start_script(script, root, env, log).wait(timeout=900)
    finally:
        subprocess.run(
            ["bash", "-c", "source .venv/bin/activate && dvc queue stop --kill"],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=120,
        )
    output = log.read_text()
    assert returncode == 0, output[-5000:]
    assert "Traceback" not in output

    # What each `dvc exp run` ran, in order: the first run everything; a new n_examples only
    # evaluate and the report; growing the study only the new models (then evaluate and the
    # report); shrinking it no training at all.
    ran = [
        re.findall(r"Running stage '([^']+)'", part)
        for part in re.split(r"^Ran experiment\(s\): .*$", output, flags=re.M)[:-1]
    ]
    check, pooled = ["check_params"], ["evaluate", "report"]
    assert ran == [
        [*check, "download", "preprocess", "train_sigmoid@42", "train_relu@42", *pooled],
        [*check, *pooled],
        [*check, "train_sigmoid@43", "train_relu@43", *pooled],
        [*check, "activation@tanh", "train_extra@tanh-42", "train_extra@tanh-43", *pooled],
        [*check, *pooled],
    ], output[-5000:]
    examples = (root / "results/examples.csv").read_text().splitlines()
    assert len(examples) == 1 + 20  # evaluate.n_examples=20, as set by the README's command
    assert "(mean of 2 seed(s))" in output  # the report's numbers pooled both seeds
    # After shrinking, the models no longer selected are pointed out, not silently dropped.
    assert "note: results/train/relu/seed43 is from a seed or activation" in output
