"""User-facing errors and the thin wrapper that turns them into one line and an exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


class PipelineError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a stage's `main`, printing user errors as one line instead of a traceback."""
    try:
        main(argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "error: interrupted; outputs were left as they were, rerun `dvc repro`", file=sys.stderr
        )
        return 130
    return 0
