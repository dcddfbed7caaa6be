"""What every stage's command line shares: one-line errors, exit codes, and stop signals.

SIGTERM and SIGINT end a stage as Ctrl-C does (cleanup runs, the MLflow run ends KILLED), except
inside `deferred_stop()`, where native code may be running and a signal only sets a flag.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.params import Params, load_params


class StageTerminated(KeyboardInterrupt):
    """Raised in the main thread when the stage receives SIGTERM, so cleanup runs as for Ctrl-C."""


class _Stop:
    """What SIGTERM and SIGINT do: raise at once, or, while native code may be mid-flight (inside
    TensorFlow), only record the request for the caller to act on at a safe point."""

    deferred = False
    requested = threading.Event()


def _on_signal(signum: int, frame: Any) -> None:
    if _Stop.deferred:
        _Stop.requested.set()
        return
    raise StageTerminated(f"received signal {signum}")


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Within this block SIGTERM and SIGINT raise StageTerminated; the old handlers come back."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def deferred_stop() -> Iterator[threading.Event]:
    """Within this block a stop signal only sets the yielded event; raise_if_stopped() acts on it.

    Raising from a signal handler while TensorFlow runs has crashed the process here (a corrupted
    heap, SIGABRT), leaving the run RUNNING; a flag checked between batches avoids that.
    """
    _Stop.requested.clear()
    _Stop.deferred = True
    try:
        yield _Stop.requested
    finally:
        _Stop.deferred = False
    raise_if_stopped()


def raise_if_stopped() -> None:
    if _Stop.requested.is_set():
        _Stop.requested.clear()
        raise StageTerminated("stopped by a signal")


def stage_parser(doc: str, *paths: str) -> argparse.ArgumentParser:
    """A stage's arguments: `--params` and one required `--<name>` per path. Paths have no
    defaults: the stage's `cmd` in dvc.yaml is the one place they are written."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for name in paths:
        parser.add_argument(f"--{name}", type=Path, required=True)
    return parser


def parse_stage(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, Params]:
    """The parsed arguments and the validated params they point at."""
    args = parser.parse_args(argv)
    return args, load_params(args.params)


def run_cli(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> int:
    """Run a stage's `main`, printing user errors as one line instead of a traceback."""
    # The imports (TensorFlow, MLflow) leave millions of objects that live until exit; frozen,
    # the garbage collector stops walking them on every full collection and at exit, which
    # cost a tiny train stage about a fifth of its CPU time.
    gc.freeze()
    try:
        with stop_signals():
            main(argv)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.exit_at_once:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        return 1
    except KeyboardInterrupt:
        print(
            "error: interrupted; outputs were left as they were, rerun `dvc repro`", file=sys.stderr
        )
        return 130
    return 0
