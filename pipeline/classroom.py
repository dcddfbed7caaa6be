"""A class on one tracking server: the teacher's accounts, a student's run, the pooled report.

    python -m pipeline.classroom accounts class.txt --archive … --data-url …   # the teacher
    python -m pipeline.classroom run [--activation tanh]                        # a student
    python -m pipeline.classroom report --output reports/class                  # anyone who reads

Each student logs to an experiment of their own, `<mlflow.experiment>-<account>`, which the
teacher's command creates (or takes over) and gives them MANAGE on; every other account has the
server's default permission (READ) there. So a student logs and manages their own runs and
models, can read everyone's, and can change no one else's; the teacher, the server's admin,
reads all. Any account may create an experiment or a registered model and holds MANAGE on what
it created, so a name may already be someone's when its student is added: the command then
removes every other account's rights on it (`reclaim`) and names what that account left there.
Each experiment carries the student's seed (42 for the first name on the class list, then 43, …)
and where the class's copy of the archive is served, so a student's run needs only their login.

The pooled report reads the class's runs from the server alone, with read access: nothing from
the students' machines. It pools a run only when the account it was logged by (MLflow's
`mlflow.user`, which the client sends: the login) is the experiment's student. It is a module
rather than a DVC stage because its input is the server's state, which DVC cannot hash: as a
stage it would have to run every time anyway.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline import certificate, cli
from pipeline.classroom_accounts import (
    SEED_TAG,
    SHA_TAG,
    STUDENT_TAG,
    URL_TAG,
    accounts_main,
    class_experiments,
    refused,
    server,
)
from pipeline.errors import PipelineError
from pipeline.params import load_params


def certificate_main(args: argparse.Namespace) -> None:
    cert = certificate.write_certificate(Path.cwd(), args.host, args.days)
    print(
        f"wrote {cert.name} (for {', '.join(args.host)}, valid {args.days} days: give it to the "
        f"students) and {certificate.KEY_FILE} (the server's key: keep it on this machine)"
    )


def own_experiment(experiments: Sequence, account: str, base: str):
    """Of the class experiments, the one the teacher's command gave `account`: tagged as theirs
    and named `<base>-<account>` (or `base` itself, once a run has set mlflow.experiment to it);
    when params.yaml names neither, the only one tagged as theirs whose name ends in
    `-<account>`. None when there is none. Tags alone do not do: any account may tag an
    experiment of its own as anyone's, but only the teacher's command hands out the names."""
    tagged = [e for e in experiments if e.tags.get(STUDENT_TAG) == account]
    named = [e for e in tagged if e.name in (base, f"{base}-{account}")]
    found = named or [e for e in tagged if e.name.endswith(f"-{account}")]
    if len(found) > 1:
        raise PipelineError(
            f"several experiments are tagged as {account}'s ({', '.join(e.name for e in found)}); "
            "set mlflow.experiment in params.yaml to the one your teacher gave you"
        )
    return found[0] if found else None


def assignment(uri: str, account: str, base: str) -> tuple[str, dict[str, str]]:
    """(experiment name, its tags): the seed and data the teacher's command gave `account`,
    so that a second run finds it whatever params.yaml now says (see `own_experiment`)."""
    try:
        experiments = class_experiments(uri)
    except Exception as exc:
        raise refused(uri, exc) from None
    found = own_experiment(experiments, account, base)
    if found is None:
        raise PipelineError(
            f"the server {uri} has no class experiment for {account!r}; ask your teacher to add "
            f"{account!r} with `python -m pipeline.classroom accounts`"
        )
    return found.name, found.tags


def student_command(experiment: str, tags: Mapping[str, str], activation: str | None) -> list[str]:
    """The `dvc exp run` that trains a student's seed, logging to their experiment."""
    overrides = {
        "mlflow.experiment": experiment,
        "train.seeds": f"[{tags[SEED_TAG]}]",
        "data.url": tags[URL_TAG],
        "data.sha256": tags[SHA_TAG],
        "train.extra_activations": f"[{activation}]" if activation else "[]",
    }
    return ["dvc", "exp", "run", *(a for k, v in overrides.items() for a in ("-S", f"{k}={v}"))]


def run_main(args: argparse.Namespace) -> None:
    uri = server()
    account = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if not account:
        raise PipelineError("set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    params = load_params(args.params)  # a broken params.yaml is named before anything runs
    experiment, tags = assignment(uri, account, params.mlflow.experiment)
    command = student_command(experiment, tags, args.activation)
    print(f"{account}: seed {tags[SEED_TAG]}; running {' '.join(command)}", flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise PipelineError(f"`dvc exp run` failed (exit {result.returncode}); see above")


def pooled_report(args: argparse.Namespace) -> None:
    # Imported here: matplotlib and the report stage's modules load for this command only.
    from pipeline import classroom_report

    classroom_report.report_main(args)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    commands = parser.add_subparsers(dest="command", required=True)
    accounts = commands.add_parser("accounts", help="the teacher: accounts from a class list")
    accounts.add_argument("class_list", help="one account per line: `account [password]`")
    accounts.add_argument("--archive", required=True, help="the archive file the class downloads")
    accounts.add_argument("--data-url", required=True, help="where the class downloads it from")
    accounts.add_argument(
        "--no-logins", action="store_true", help="a server without logins: experiments only"
    )
    student = commands.add_parser("run", help="a student: train your seed, log to the server")
    student.add_argument("--activation", help="one more activation to train beside the two")
    report = commands.add_parser("report", help="the pooled report, from the server alone")
    report.add_argument("--output", required=True, help="folder for report.md and its figures")
    tls = commands.add_parser("certificate", help="the teacher: a certificate for HTTPS")
    tls.add_argument(
        "--host", action="append", required=True, help="the server's name or address (repeatable)"
    )
    tls.add_argument("--days", type=int, default=certificate.VALID_DAYS, help="how long it lasts")
    args = parser.parse_args(argv)
    commands = {"accounts": accounts_main, "run": run_main, "report": pooled_report}
    commands["certificate"] = certificate_main
    commands[args.command](args)


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
