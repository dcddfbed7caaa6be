"""Train a study's missing models as tasks on a Ray cluster; DVC brings them back.

    python -m pipeline.cluster --address <head>:6379

Looks at the train stages the params select (one per activation and seed), asks DVC which are
not up to date, and submits each as a Ray task. A task runs on any node that has this project's
environment: it makes a clone of the git remote at the driver's commit, writes the driver's
params.yaml, runs `dvc repro <stage>` there (logging to the tracking server the driver names,
with the driver's credentials) and `dvc push --run-cache` to the project's DVC remote. When every
task is done the driver runs `dvc pull --run-cache`, so the ordinary `dvc repro` afterwards
restores each trained model from the run-cache instead of training it, then evaluates and
reports over all of them.

Ray schedules the tasks and runs a task again on another node when its node is lost; a task's
own failure (a refused param, a corrupt archive) is not retried and ends the study with the
stage's one-line error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from pipeline import cli
from pipeline.errors import PipelineError
from pipeline.params import load_params, stage_name

# What a task passes on to its stage: the tracking server and credentials, the HTTP client's
# retry settings, and the study's id (every run of the study is tagged with it).
FORWARDED = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
STUDY_ENV = "PIPELINE_STUDY"
# Where a node keeps its mirror of the git remote, its DVC cache and the tasks' clones.
HOME_ENV = "ACTIVATION_STUDY_HOME"
# How long a failed study waits for its cancelled tasks to stop before it marks their runs.
CANCEL_WAIT_S = 60
# What `dvc repro` prints for each stage it runs (DVC 3.67; tests/e2e/test_cluster_dvc.py pins
# it and the lock-file API that `forget` uses).
RUNNING_STAGE = re.compile(r"Running stage '([^']+)'")


class TaskFailed(PipelineError):
    """A stage failed on a node for a reason of its own (not the node's loss): not retried."""


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def _node_git(*args: str, cwd: Path | None = None) -> str:
    """git on a node: a failure is the task's own, in one line (not retried elsewhere)."""
    try:
        return _git(*args, cwd=cwd)
    except subprocess.CalledProcessError as exc:
        raise TaskFailed(
            f"git {args[0]} on node {socket.gethostname()}: {_error_line(exc.stderr or '')}"
        ) from None


def _error_line(output: str) -> str:
    """The stage's own one-line error, or the last line printed."""
    lines = [line for line in output.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("error: ")]
    return (ours or lines or ["(no output)"])[-1].removeprefix("error: ")


def train_stage(stage: str, commit: str, git_url: str, params_text: str) -> dict:
    """One Ray task: the stage trained in a fresh clone on this node and pushed to the remote."""
    import filelock

    home = Path(os.environ.get(HOME_ENV, "~/.cache/activation-study")).expanduser()
    (home / "work").mkdir(parents=True, exist_ok=True)
    mirror = home / "repo.git"
    with filelock.FileLock(home / "mirror.lock"):  # tasks on one node share one mirror
        if mirror.exists():
            _node_git("fetch", "--quiet", git_url, "+refs/heads/*:refs/heads/*", cwd=mirror)
        else:
            _node_git("clone", "--quiet", "--bare", git_url, str(mirror))
    sweep_clones(home / "work")
    # A clone per task: DVC locks its workspace, and a node may run several tasks at once. The
    # task holds the clone's lock while it runs; a lost node's process releases it as it dies.
    work = Path(tempfile.mkdtemp(prefix="task-", dir=home / "work"))
    held = filelock.FileLock(work.with_suffix(".lock"))
    held.acquire()
    started = time.monotonic()
    try:
        _node_git("clone", "--quiet", "--shared", str(mirror), str(work))
        _node_git("-c", "advice.detachedHead=false", "checkout", "--quiet", commit, cwd=work)
        (work / "params.yaml").write_text(params_text)
        env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        }

        def dvc(*args: str) -> None:
            result = _run_group(["dvc", *args], cwd=work, env=env)
            if result.returncode != 0:
                raise TaskFailed(
                    f"{stage} on node {socket.gethostname()}: {_error_line(result.stdout + result.stderr)}"
                )

        dvc("cache", "dir", "--local", str(home / "dvc-cache"))  # shared by the node's tasks
        dvc("repro", stage)
        dvc("push", "--run-cache")
        return {
            "stage": stage,
            "node": socket.gethostname(),
            "pid": os.getpid(),
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        held.release()
        work.with_suffix(".lock").unlink(missing_ok=True)


def _run_group(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    """`cmd` in a process group of its own, the whole group killed if this task is cancelled
    (the stage's own process, under DVC, would otherwise train on and finish its run)."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,
    )
    try:
        out, err = proc.communicate()
    except BaseException:  # Ray's cancellation arrives as KeyboardInterrupt
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def sweep_clones(work: Path) -> list[Path]:
    """Remove the clones of tasks whose process is gone (a lost node's, whose `finally` never
    ran): a clone whose lock nobody holds. Returns what it removed."""
    import filelock

    swept = []
    for clone in sorted(work.glob("task-*")):
        if not clone.is_dir():
            continue
        lock = filelock.FileLock(clone.with_suffix(".lock"))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            continue  # a running task's
        try:
            shutil.rmtree(clone, ignore_errors=True)
            swept.append(clone)
        finally:
            lock.release()
            clone.with_suffix(".lock").unlink(missing_ok=True)
    return swept


def selected_stages(params) -> list[str]:
    """The train stages the params select, as DVC names them."""
    return [stage_name(a, s) for s in params.train.seeds for a in params.train.activations]


def missing_stages(stages: Sequence[str]) -> list[str]:
    """Those of `stages` whose outputs DVC does not have as the lock records them."""
    result = subprocess.run(
        ["dvc", "status", "--json", *stages], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise PipelineError(f"`dvc status` failed: {_error_line(result.stdout + result.stderr)}")
    changed = json.loads(result.stdout or "{}")
    return [s for s in stages if s in changed]


def driver_checks(remote: str) -> tuple[str, str]:
    """(commit, git URL) the nodes will clone; refuses what a node could not reproduce."""
    try:
        commit = _git("rev-parse", "HEAD")
        url = _git("remote", "get-url", remote)
        if "://" not in url and ":" not in url:  # a local path: the same for every node
            url = str(Path(url).resolve())
    except subprocess.CalledProcessError:
        raise PipelineError(
            f"no git remote {remote!r}; every node clones the project from it: add one "
            "(git remote add origin …) and push"
        ) from None
    if not _git("branch", "--remotes", "--contains", commit):
        raise PipelineError(
            f"commit {commit[:12]} is not on {remote!r}; push it (git push {remote}) so the "
            "nodes can check it out"
        )
    dirty = [
        line for line in _git("status", "--porcelain").splitlines() if "params.yaml" not in line
    ]
    code = [line for line in dirty if re.search(r"\s(pipeline/|dvc\.yaml)", line)]
    if code:
        raise PipelineError(
            "the code or dvc.yaml has uncommitted changes, which the nodes would not have; "
            "commit and push them"
        )
    default = subprocess.run(["dvc", "remote", "default"], capture_output=True, text=True)
    if default.returncode != 0 or not default.stdout.strip():
        raise PipelineError(
            "no default DVC remote; set one every node can reach (dvc remote add -d store …) "
            "and commit .dvc/config"
        )
    return commit, url


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--remote", default="origin", help="the git remote every node clones")
    parser.add_argument("--retries", type=int, default=3, help="runs of a task on lost nodes")
    args = parser.parse_args(argv)
    params = load_params(args.params)  # a refused param stops here, before any task
    commit, url = driver_checks(args.remote)
    stages = selected_stages(params)
    missing = missing_stages(stages)
    print(f"{len(stages)} model(s) selected, {len(missing)} to train", flush=True)
    if missing:
        run_tasks(missing, commit, url, Path(args.params).read_text(), args)
    restore(stages)


def forget(stages: Sequence[str]) -> None:
    """Drop these stages' entries from dvc.lock (with DVC's own lock-file API). They were out of
    date, which is why they were trained; an entry left in place would send DVC looking for its
    old outputs instead of the run-cache's new ones, and it would train the stage again here."""
    from dvc.dvcfile import Lockfile
    from dvc.repo import Repo

    with Repo() as repo:
        lockfile = Lockfile(repo, "dvc.lock")
        if not lockfile.exists():
            return
        doomed = [stage for name in stages for stage in repo.stage.collect(name)]
        # An output DVC does not cache and that is missing here (the check's stamp in a project
        # that does not commit it) cannot be pulled: its stage must run again, so it goes too.
        doomed += [
            stage
            for stage in repo.index.stages
            if any(not out.use_cache and not out.exists for out in stage.outs)
        ]
        for stage in doomed:
            lockfile.remove_stage(stage)


def restore(stages: Sequence[str]) -> None:
    """Bring the trained stages here from the DVC remote: their run-cache entries, then `dvc
    repro --pull` of those stages, which finds each in the run-cache, pulls its outputs and
    records it in dvc.lock instead of running it."""
    forget(stages)
    for args in (["fetch", "--run-cache"], ["repro", "--pull", *stages]):
        result = subprocess.run(["dvc", *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise PipelineError(
                f"`dvc {args[0]}` failed: {_error_line(result.stdout + result.stderr)}"
            )
    trained_here = [s for s in RUNNING_STAGE.findall(result.stdout) if s.startswith("train_")]
    if trained_here:  # not in the run-cache after all: said, not hidden
        print(f"note: trained here, not on the cluster: {', '.join(trained_here)}")
    print(
        f"{len(stages) - len(trained_here)} model(s) restored from DVC's run-cache; "
        "`dvc repro` now evaluates and reports without training"
    )


def why(stage: str, exc: Exception, retries: int) -> str:
    """One line for a task that failed: the stage's own error, or its node's loss."""
    import ray

    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, PipelineError):
        return str(cause)
    if isinstance(exc, ray.exceptions.RayTaskError):
        return (
            f"{stage}: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
        )
    return f"{stage} was lost {retries + 1} times ({type(exc).__name__}); check the cluster's nodes"


def run_tasks(missing: Sequence[str], commit: str, url: str, params_text: str, args) -> None:
    import ray

    from pipeline.store import reap_study_runs  # mlflow: not for the nodes' task imports

    study = uuid.uuid4().hex[:12]
    env = {k: os.environ[k] for k in FORWARDED if k in os.environ} | {STUDY_ENV: study}
    out = sys.stdout
    # Ray prints what its nodes report (a lost node's last log lines, a retried task) to
    # sys.stdout from a thread of its own: into a file, so the study's lines stay readable.
    ray_log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in the finally below
        "w", prefix="ray-driver-", suffix=".log", delete=False
    )
    sys.stdout = ray_log
    try:
        ray.init(
            address=args.address,
            runtime_env={"env_vars": env},
            logging_level="ERROR",
            log_to_driver=False,
        )
        task = ray.remote(num_cpus=1, max_retries=args.retries)(train_stage)
        pending = {task.remote(s, commit, url, params_text): s for s in missing}
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            stage = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                stop_others(list(pending), study)
                raise PipelineError(f"the study stopped: {why(stage, exc, args.retries)}") from None
            done += 1
            print(
                f"[{done}/{len(missing)}] {stage} trained on {result['node']} "
                f"in {result['seconds']:.0f} s",
                file=out,
                flush=True,
            )
        if os.environ.get("MLFLOW_TRACKING_URI"):
            lost = reap_study_runs(study, "its Ray task attempt was lost")
            if lost:
                print(
                    f"note: marked KILLED {len(lost)} run(s) of lost attempts: {', '.join(lost)}",
                    file=out,
                )
    finally:
        ray.shutdown()
        sys.stdout = out
        ray_log.close()
        if os.path.getsize(ray_log.name):
            print(f"note: Ray's own messages (lost nodes, retried tasks) are in {ray_log.name}")
        else:
            os.unlink(ray_log.name)


def stop_others(refs: list, study: str) -> None:
    """Cancel the study's other tasks and wait until they have stopped (each kills its stage),
    then mark their runs KILLED, before the study raises."""
    import ray

    from pipeline.store import reap_study_runs

    for ref in refs:
        ray.cancel(ref)
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        reap_study_runs(study, "the study stopped: another task failed")


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
