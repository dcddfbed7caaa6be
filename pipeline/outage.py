"""A tracking server that stops answering: how long MLflow retries, metrics sent in the
background, and logging a stage's results so that an outage costs one line, never the outputs.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mlflow
from mlflow.entities import Metric

from pipeline.errors import PipelineError, causes
from pipeline.store import tracking_uri

# How long a request to a server that stopped answering is retried: urllib3 waits 0, 2f, 4f, …,
# f·2^(R-1) s between R retries (f the backoff factor), about f·(2^R − 2) s in all: 126 s here,
# so an outage of up to 2 minutes (a restart, a dropped connection) loses nothing. MLflow's own
# defaults (f = 2, 120 s per request) wait over 4 minutes. Users can override each.
HTTP_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def use_client_defaults() -> None:
    """Give MLflow's HTTP client the retries above, where the user set none of their own."""
    for key, value in HTTP_CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)


class TrackingOutage(PipelineError):
    """The tracking server stopped answering and MLflow's retries were spent."""

    exit_at_once = True  # MLflow's threads may still be retrying other requests


def retry_window() -> float:
    """Seconds MLflow's HTTP client retries one request to a server that stopped answering:
    f·(2^R − 2) for R retries and backoff factor f (126 s with the stages' defaults)."""
    retries = int(os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7"))
    factor = float(os.environ.get("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"))
    return max(factor * (2**retries - 2), 1.0)


class Watchdog:
    """Ends the process with one error line when nothing progresses for `window` seconds.

    MLflow's retries apply per request: with the server gone, every batch still queued would
    wait them out in turn, so after training the stage as a whole gets one window. The process
    exits at once (MLflow's retrying threads would hold up a normal exit just as long).
    """

    def __init__(self, window: float, describe: Callable[[], str]) -> None:
        self.window = window
        self.describe = describe
        self._last = time.monotonic()
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="logging-watchdog").start()

    def progress(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            if time.monotonic() - self._last > self.window:
                print(f"error: {self.describe()}", file=sys.stderr, flush=True)
                sys.stdout.flush()
                os._exit(1)


class LostMetrics(Exception):
    """Metrics sent in the background that did not reach the server, even when sent again."""

    def __init__(self, steps: Sequence[int], cause: Exception) -> None:
        super().__init__(f"{describe_steps(steps)}: {cause}")
        self.what = f"the metrics of {describe_steps(steps)}"


def is_outage(exc: BaseException) -> bool:
    """True when `exc` means the server did not answer (after MLflow's retries), not a refusal:
    MLflow raises its own exception from (or while handling) the requests/urllib3 one."""
    import requests
    import urllib3

    unanswered = (
        LostMetrics,
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
        urllib3.exceptions.MaxRetryError,
    )
    return any(isinstance(seen, unanswered) for seen in causes(exc))


def describe_steps(steps: Sequence[int]) -> str:
    """[0] → "epoch 0"; [3, 4, 5] → "epochs 3–5"; [2, 5] → "epochs 2, 5"."""
    steps = sorted(set(steps))
    if len(steps) == 1:
        return f"epoch {steps[0]}"
    if steps == list(range(steps[0], steps[-1] + 1)):
        return f"epochs {steps[0]}–{steps[-1]}"
    return "epochs " + ", ".join(map(str, steps))


class BackgroundMetrics:
    """Per-epoch metrics sent by one background thread, so training never waits on the server;
    `wait_and_resend()` after training waits for them and sends again any batch that failed.

    Our own thread rather than MLflow's asynchronous logging: its futures report failures as one
    summary exception that drops the cause, and the cause tells an outage from a refusal.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._client = mlflow.MlflowClient()
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self._sent: list[tuple[int, dict[str, float], concurrent.futures.Future]] = []
        self._confirmed: set[int] = set()

    def _send(self, step: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._client.log_batch(self.run_id, metrics=batch)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        metrics = dict(metrics)
        self._sent.append((step, metrics, self._sender.submit(self._send, step, metrics)))

    def unconfirmed(self) -> str:
        """'the metrics of epochs 3–20': what has not been seen to reach the server."""
        steps = sorted({s for s, _, _ in self._sent} - self._confirmed)
        return f"the metrics of {describe_steps(steps)}" if steps else "no epoch metrics"

    def wait_and_resend(self, progress: Callable[[], None] = lambda: None) -> None:
        """Wait for every batch; send again, waiting, each that failed. `progress` is called
        whenever a batch is confirmed."""
        self._confirmed = set()
        failed = []
        for step, metrics, future in self._sent:
            if (exc := future.exception()) is None:
                self._confirmed.add(step)
                progress()
            elif is_outage(exc):
                failed.append((step, metrics))
            else:
                raise exc
        self._sender.shutdown()
        for i, (step, metrics) in enumerate(failed):
            try:
                self._send(step, metrics)
                self._confirmed.add(step)
                progress()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                raise LostMetrics(sorted({s for s, _ in failed[i:]}), exc) from None


# A logging step: what it logs (named when an outage stops it), and the call that logs it.
Step = tuple[str, Callable[[], Any]]


def run_logging_steps(
    stage: str,
    steps: Sequence[Step],
    *,
    system_metrics: bool = False,
    background: BackgroundMetrics | None = None,
    uri: str | None = None,
) -> list[Any]:
    """Log what a stage computed: run the named steps in order (first waiting for
    `background`'s metrics, when given) and return their results. Every stage logs this way,
    after its outputs are written, so a tracking outage never throws them away: when the server
    is gone for longer than MLflow's retries last, or nothing reaches it for that long in all,
    the stage stops with one line naming the URI and every step not logged."""
    uri = uri or tracking_uri()
    window = retry_window()
    current = 0

    def outage(lost_now: str, reason: str) -> str:
        lost = [lost_now] + [name for name, _ in steps[current + 1 :]]
        if system_metrics:
            # MLflow's sampler stops for good once the server fails to answer it.
            lost.append("system metrics from the outage on")
        return (
            f"the MLflow tracking server {uri} stopped answering and {reason}; not logged: "
            f"{'; '.join(lost)}. {stage} finished and wrote its outputs, but DVC did not "
            f"record them: rerun `dvc repro {stage}` once the server answers"
        )

    if background is not None:
        steps = [("the epoch metrics", background.wait_and_resend), *steps]

    def what_now() -> str:
        if current == 0 and background is not None:
            return background.unconfirmed()
        return steps[current][0]

    watchdog = Watchdog(
        window,
        lambda: outage(
            what_now(),
            f"nothing reached it for {window:.0f} s after {stage} finished (the window set by "
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR)",
        ),
    )
    results = []
    try:
        for current, (what, step) in enumerate(steps):  # `current` is read by the watchdog
            try:
                if current == 0 and background is not None:
                    step(watchdog.progress)
                else:
                    results.append(step())
                watchdog.progress()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                reason = (
                    "MLflow's retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES, "
                    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR) ran out"
                )
                raise TrackingOutage(outage(getattr(exc, "what", what), reason)) from None
    finally:
        watchdog.stop()
    return results


def one_quick_attempt() -> None:
    """Let MLflow's client try once, briefly: for a request after its retries were just spent on
    this server (ending the run, which its exit hook would otherwise try again at length)."""
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
