"""Writing outputs atomically, so a failed stage never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

# What the system says when an output cannot be written, and what to do about it.
UNWRITABLE = {
    errno.ENOSPC: "no space left on the device; free some space there, or move the folder to a "
    "larger disk",
    errno.EDQUOT: "the disk quota is used up; free some space, or ask for a larger quota",
    errno.EACCES: "permission denied; make the folder writable for this user",
    errno.EPERM: "operation not permitted; make the folder writable for this user",
    errno.EROFS: "the file system is read-only; put the folder on a writable disk",
}


def unwritable(path: Path, exc: OSError) -> PipelineError:
    """One line naming the output that could not be written, why, and the fix."""
    return PipelineError(
        f"cannot write {path}: {UNWRITABLE[exc.errno]}; then rerun `dvc repro` "
        "(earlier outputs were left as they were)"
    )


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; on success it replaces `path`, on failure it is removed.

    Works for a file or a directory: whatever the caller creates at the yielded path is moved.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        if exc.errno in UNWRITABLE:
            raise unwritable(path, exc) from None
        raise
    tmp = tmp_dir / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as exc:
        # Only errors writing this output (a library may not say which file it was writing).
        ours = exc.filename is None or str(exc.filename).startswith((str(tmp_dir), str(path)))
        if exc.errno in UNWRITABLE and ours:
            raise unwritable(path, exc) from None
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
