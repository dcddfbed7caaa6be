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
import contextlib
import os
import re
import secrets
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import certificate, cli, store
from pipeline.errors import PipelineError
from pipeline.escape import ESCAPE_THRESHOLD, escape_epoch, format_escape
from pipeline.files import sha256_file
from pipeline.params import MAIN_ACTIVATIONS, TRAIN_KEYS, Params, load_params, logged_params
from pipeline.stats import paired_difference, summarize_values

FIRST_SEED = 42  # the tutorial's: the first student on the list reproduces it
ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Experiment tags the teacher's command sets and a student's run reads.
STUDENT_TAG, SEED_TAG = "class.student", "class.seed"
URL_TAG, SHA_TAG = "class.data_url", "class.data_sha256"
# The run tag the teacher's command puts on runs another account left in a student's
# experiment; the pooled report lists those runs apart, giving its value as the reason.
NOT_POOLED_TAG = "class.not_pooled"
# Rounds of reading every account's grants and revoking the foreign ones: one account can give
# another rights on a name until its own are revoked, so the command reads again until none are.
RECLAIM_ROUNDS = 3


def student_experiment(params: Params, account: str) -> str:
    return f"{params.mlflow.experiment}-{account}"


@dataclass(frozen=True)
class Student:
    account: str
    seed: int
    password: str | None  # from the class file; None: the command makes one


def read_class_list(text: str) -> list[Student]:
    """One student per line, `account [password]`; blank lines and `#` comments are skipped.
    Seeds follow the order: 42 for the first student, 43 for the next, …"""
    students, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        account, password = words[0], (words[1] if len(words) > 1 else None)
        if len(words) > 2 or ACCOUNT.fullmatch(account) is None:
            raise PipelineError(
                f"class list line {number}: {line.strip()!r} is not `account [password]` (an "
                "account is letters, digits, '.', '_' or '-'); fix that line"
            )
        if account in seen:
            raise PipelineError(f"class list line {number}: {account!r} is listed twice")
        seen.add(account)
        students.append(Student(account, FIRST_SEED + len(students), password))
    if not students:
        raise PipelineError("the class list names no student; write one account per line")
    return students


def _server() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise PipelineError(
            "set MLFLOW_TRACKING_URI to the class's tracking server (http://host:port), with "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    store.check_server(uri)
    return uri


def _refused(uri: str, exc: Exception) -> PipelineError:
    return PipelineError(store.store_error(uri, exc).removesuffix(", nothing was run"))


@contextlib.contextmanager
def _server_imports() -> Iterator[None]:
    """Around importing MLflow's server modules (its auth client and routes): they import
    starlette.middleware.wsgi, which Starlette 1.x deprecates on import with a UserWarning (not
    a DeprecationWarning) that would print above our output. Only that warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"starlette\.middleware\.wsgi is deprecated", category=UserWarning
        )
        yield


def _auth_client(uri: str):
    from mlflow.server import get_app_client

    with _server_imports():
        return get_app_client("basic-auth", tracking_uri=uri)


def list_users(uri: str) -> list[dict[str, Any]]:
    """Every account on a basic-auth server with its roles and their grants, in one request
    (`users/list`, which MLflow's auth client does not wrap)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request, verify_rest_response

    with _server_imports():
        from mlflow.server.auth.routes import LIST_USERS

    response = http_request(get_default_host_creds(uri), LIST_USERS, "GET")
    return verify_rest_response(response, LIST_USERS).json()["users"]


@dataclass(frozen=True)
class Grant:
    """One account's permission on one experiment (by id) or registered model (by name)."""

    account: str
    kind: str  # "experiment" or "registered_model"
    resource: str
    permission: str


def direct_grants(users: Sequence[Mapping[str, Any]]) -> list[Grant]:
    """The grants of every account but the admins, from `list_users`. MLflow keeps an account's
    own grants in its own role, `__user_<id>__`: the MANAGE it gets on what it creates, and what
    a MANAGE holder grants it. Other roles only an admin can make, and an admin holds every
    right anyway, so neither is counted."""
    return [
        Grant(
            user["username"], grant["resource_type"], grant["resource_pattern"], grant["permission"]
        )
        for user in users
        if not user["is_admin"]
        for role in user["roles"]
        if role["name"] == f"__user_{user['id']}__"
        for grant in role["permissions"]
    ]


def server_location(default_location: str, experiment_id: str) -> str | None:
    """Where the server keeps a new experiment's artifacts, from where it keeps the Default
    experiment's (`<root>/0`); None when that is not of that form."""
    root, _, last = default_location.rpartition("/")
    return f"{root}/{experiment_id}" if last == "0" and root else None


@dataclass
class Handed:
    """What the teacher's command gives one student: their experiment and model names."""

    student: Student
    new_account: bool
    experiment_id: str
    experiment: str
    models: list[str]

    def resources(self) -> list[tuple[str, str, str]]:
        """(kind, id, name) of each."""
        return [("experiment", self.experiment_id, self.experiment)] + [
            ("registered_model", m, m) for m in self.models
        ]


def check_locations(client, names: Sequence[str]) -> None:
    """Refuse to hand out an existing experiment that keeps its artifacts elsewhere than the
    server would: whoever creates an experiment chooses that, and MLflow cannot change it."""
    default = None
    for name in names:
        found = client.get_experiment_by_name(name)
        if found is None:
            continue
        default = default or client.get_experiment("0").artifact_location
        expected = server_location(default, found.experiment_id)
        if expected is not None and found.artifact_location != expected:
            raise PipelineError(
                f"the experiment {name} keeps its artifacts at {found.artifact_location}, not "
                f"where this server keeps them ({expected}), and MLflow cannot move them; "
                f"rename it away (mlflow experiments rename --experiment-id "
                f"{found.experiment_id} --new-name {name}-old) and run this command again"
            )


def _experiment_for(client, name: str) -> str:
    """The id of experiment `name`: created when missing, restored when deleted."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name)
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return found.experiment_id


def _ensure_model(client, name: str) -> None:
    import mlflow

    try:
        client.get_registered_model(name)
    except mlflow.exceptions.RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name)


def _ignore(code: str, call, *args) -> None:
    """call(*args), except that MLflow's error `code` is not an error."""
    import mlflow

    try:
        call(*args)
    except mlflow.exceptions.RestException as exc:
        if exc.error_code != code:
            raise


def reclaim(uri: str, auth, handed: Sequence[Handed]) -> dict[tuple[str, str], list[Grant]]:
    """Leave each student MANAGE on their names and every other account (but admins) nothing
    beyond the server's default: revoke the others' grants and read the grants again, until
    none is left. Returns the revoked grants by (kind, id)."""
    revoked: dict[tuple[str, str], list[Grant]] = {}
    for _ in range(RECLAIM_ROUNDS):
        grants = direct_grants(list_users(uri))
        foreign = 0
        for hand in handed:
            account = hand.student.account
            for kind, resource, _name in hand.resources():
                on_it = [g for g in grants if (g.kind, g.resource) == (kind, resource)]
                for grant in on_it:
                    if grant.account != account:
                        foreign += 1
                        revoked.setdefault((kind, resource), []).append(grant)
                        _ignore(
                            "RESOURCE_DOES_NOT_EXIST",
                            auth.revoke_user_permission,
                            *(grant.account, kind, resource),
                        )
                own = [g.permission for g in on_it if g.account == account]
                if own != ["MANAGE"]:
                    if own:
                        auth.revoke_user_permission(account, kind, resource)
                    auth.grant_user_permission(account, kind, resource, "MANAGE")
        if not foreign:
            return revoked
    taken = sorted({g.account for gs in revoked.values() for g in gs})
    raise PipelineError(
        f"accounts kept gaining rights on the class's names while this command ran ("
        f"{', '.join(taken)}); run it again, and disable those accounts if it happens again"
    )


def run_user(run) -> str:
    """The account a run says it was logged by: the `mlflow.user` tag, which MLflow's client
    fills from MLFLOW_TRACKING_USERNAME (the server checks the login, not this tag)."""
    return run.data.tags.get("mlflow.user") or run.info.user_id or "unknown"


def reclaimed_lines(client, handed: Sequence[Handed], revoked) -> list[str]:
    """One line per name taken back: whose rights were removed, and what of theirs stays there.
    Their runs are tagged so that the pooled report lists them apart. For an account made just
    now every run already there is someone else's, whatever user it names; for an older one,
    the runs naming another user are."""
    lines = []
    for hand in handed:
        account = hand.student.account
        for kind, resource, name in hand.resources():
            if (kind, resource) not in revoked:
                continue
            held = sorted({(g.account, g.permission) for g in revoked[kind, resource]})
            holders = ", ".join(f"{who} ({level})" for who, level in held)
            head = f"reclaimed {name} for {account}: removed the rights of {holders}; "
            if kind == "experiment":
                found = client.search_runs([resource], max_results=1000)
                runs = [r for r in found if _theirs(hand, r)]
                reason = (
                    f"not {account}'s: there when the teacher's command took the experiment "
                    f"back from {holders}"
                )
                for run in runs:
                    client.set_tag(run.info.run_id, NOT_POOLED_TAG, reason)
                left = ", ".join(sorted(r.info.run_name for r in runs))
                tail = f"their runs stay there, not pooled: {left}" if runs else "no run is theirs"
            else:
                versions = [
                    v
                    for v in client.search_model_versions(f"name = '{resource}'")
                    if _version_is_theirs(client, v, hand)
                ]
                left = ", ".join(sorted((v.version for v in versions), key=int))
                tail = f"their versions stay there: {left}" if versions else "no version is theirs"
            lines.append(head + tail)
    return lines


def _theirs(hand: Handed, run) -> bool:
    return hand.new_account or run_user(run) != hand.student.account


def _version_is_theirs(client, version, hand: Handed) -> bool:
    import mlflow

    try:
        return _theirs(hand, client.get_run(version.run_id))
    except mlflow.exceptions.MlflowException:
        return True  # its run is gone or unreadable: nothing says it is the student's


def create_accounts(
    uri: str,
    params: Params,
    students: Sequence[Student],
    data_url: str,
    sha256: str,
    logins: bool = True,
) -> tuple[list[tuple[Student, str | None]], list[str]]:
    """Accounts, experiments and permissions for `students`; returns each with the password
    made for it (None for an account that already existed: its password is left as it was),
    and one line per name taken back from another account. Without `logins` (a server without
    authentication) only the experiments are made."""
    import mlflow

    auth = _auth_client(uri) if logins else None
    client = mlflow.MlflowClient(tracking_uri=uri)
    # Before any account is made: a refusal after it would lose its password.
    check_locations(client, [student_experiment(params, s.account) for s in students])
    made, handed = [], []
    for student in students:
        password = None
        if auth is not None:
            try:
                auth.get_user(student.account)
            except mlflow.exceptions.RestException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                password = student.password or secrets.token_urlsafe(9)
                auth.create_user(student.account, password)
        name = student_experiment(params, student.account)
        experiment_id = _experiment_for(client, name)
        tags = {
            STUDENT_TAG: student.account,
            SEED_TAG: str(student.seed),
            URL_TAG: data_url,
            SHA_TAG: sha256,
        }
        for key, value in tags.items():
            client.set_experiment_tag(experiment_id, key, value)
        made.append((student, password))
        if auth is None:
            continue
        # The main models' registered names are reserved too: first come would be first served.
        models = [f"{name}-{activation}" for activation in MAIN_ACTIVATIONS]
        for model in models:
            _ensure_model(client, model)
        handed.append(Handed(student, password is not None, experiment_id, name, models))
    if auth is None:
        return made, []
    revoked = reclaim(uri, auth, handed)
    return made, reclaimed_lines(client, handed, revoked)


def accounts_main(args: argparse.Namespace) -> None:
    path = Path(args.class_list)
    if not path.is_file():
        raise PipelineError(f"{path} not found; write the class list, one account per line")
    students = read_class_list(path.read_text())
    if not Path(args.archive).is_file():
        raise PipelineError(f"{args.archive} not found; give the archive the class downloads")
    params = load_params(args.params)
    uri = _server()
    try:
        made, reclaimed = create_accounts(
            uri, params, students, args.data_url, sha256_file(args.archive), not args.no_logins
        )
    except PipelineError:
        raise
    except Exception as exc:
        raise _refused(uri, exc) from None
    for line in reclaimed:
        print(line)
    print(f"{'account':<20} {'password':<16} {'seed':>4}  experiment")
    for student, password in made:
        shown = password or ("(unchanged)" if not args.no_logins else "(no logins)")
        print(
            f"{student.account:<20} {shown:<16} {student.seed:>4}  "
            f"{student_experiment(params, student.account)}"
        )


def certificate_main(args: argparse.Namespace) -> None:
    cert = certificate.write_certificate(Path.cwd(), args.host, args.days)
    print(
        f"wrote {cert.name} (for {', '.join(args.host)}, valid {args.days} days: give it to the "
        f"students) and {certificate.KEY_FILE} (the server's key: keep it on this machine)"
    )


def class_experiments(uri: str) -> list:
    """The students' experiments on the server: those the teacher's command tagged."""
    import mlflow

    experiments = mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1000)
    return [e for e in experiments if STUDENT_TAG in e.tags and SEED_TAG in e.tags]


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
        raise _refused(uri, exc) from None
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
    uri = _server()
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


# ---- the pooled report -------------------------------------------------------------------


@dataclass
class ClassRun:
    """One student's training run, as read back from the server."""

    account: str
    run_name: str
    activation: str
    seed: int | None
    status: str
    params: dict[str, str]
    val_accuracy: list[float]  # per epoch, epoch 1 first
    test_accuracy: float | None
    logged_by: str  # the account the run says it was logged by (run_user)
    not_pooled: str | None = None  # why the teacher's command set it apart (NOT_POOLED_TAG)

    @property
    def escape_epoch(self) -> int | None:
        return escape_epoch(self.val_accuracy)


@dataclass
class Pooled:
    pooled: list[ClassRun]
    apart: list[tuple[ClassRun, str]]  # (run, why it was not pooled)
    students: list[str] = field(default_factory=list)


def _differences(run: ClassRun, reference: Mapping[str, str]) -> list[str]:
    return [
        f"{key} {run.params.get(key, 'missing')} (class: {value})"
        for key, value in reference.items()
        if run.params.get(key) != value
    ]


def pool(runs: Sequence[ClassRun], reference: Mapping[str, str]) -> Pooled:
    """Finished, evaluated runs of the class's params (and of the data most runs used), logged
    by the experiment's own student, are pooled; every other run is listed apart with the
    reason."""
    apart, candidates = [], []
    for run in runs:
        if run.not_pooled:
            apart.append((run, run.not_pooled))
        elif run.logged_by != run.account:
            apart.append((run, f"logged by {run.logged_by}, not {run.account}"))
        elif run.status != "FINISHED":
            apart.append((run, run.status.lower()))
        elif differences := _differences(run, reference):
            apart.append((run, "other params: " + ", ".join(differences)))
        elif run.test_accuracy is None:
            apart.append((run, "not evaluated (its evaluate stage did not finish)"))
        else:
            candidates.append(run)
    data = Counter((r.params.get("train_images"), r.params.get("val_images")) for r in candidates)
    usual = data.most_common(1)[0][0] if data else None
    pooled = []
    for run in candidates:
        seen = (run.params.get("train_images"), run.params.get("val_images"))
        if seen == usual:
            pooled.append(run)
        else:
            apart.append(
                (
                    run,
                    f"other data: {seen[0]} training / {seen[1]} validation images "
                    f"(most runs: {usual[0]} / {usual[1]})",
                )
            )
    students = sorted({r.account for r in pooled})
    return Pooled(pooled, apart, students)


def escape_counts(runs: Sequence[ClassRun], epochs: int) -> dict[str, int]:
    """How many runs left chance in each epoch, and how many never did."""
    counts = {str(e): 0 for e in range(1, epochs + 1)} | {"never": 0}
    for run in runs:
        counts[format_escape(run.escape_epoch)] += 1
    return counts


def paired_by_seed(runs: Sequence[ClassRun]) -> dict[str, Any] | None:
    """ReLU − sigmoid test accuracy over (student, seed) pairs that have both; None if none do."""
    by_pair: dict[tuple[str, int | None], dict[str, float]] = {}
    for run in runs:
        by_pair.setdefault((run.account, run.seed), {})[run.activation] = run.test_accuracy
    pairs = [v for v in by_pair.values() if set(MAIN_ACTIVATIONS) <= set(v)]
    if not pairs:
        return None
    return paired_difference([p["relu"] for p in pairs], [p["sigmoid"] for p in pairs])


def read_class_runs(uri: str, params: Params) -> list[ClassRun]:
    """Every training run (not deleted) in the class's student experiments: those named
    `<mlflow.experiment>-<student>` (see `assignment`)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = [
        e
        for e in class_experiments(uri)
        if e.name == student_experiment(params, e.tags[STUDENT_TAG])
    ]
    runs = []
    for experiment in experiments:
        found = client.search_runs(
            [experiment.experiment_id], "tags.stage LIKE 'train_%'", max_results=1000
        )
        for run in found:
            history = client.get_metric_history(run.info.run_id, "val_accuracy")
            seed = run.data.tags.get("seed")
            runs.append(
                ClassRun(
                    account=experiment.tags[STUDENT_TAG],
                    run_name=run.info.run_name,
                    activation=run.data.tags.get("activation", "?"),
                    seed=int(seed) if seed and seed.isdigit() else None,
                    status=run.info.status,
                    params=dict(run.data.params),
                    val_accuracy=[m.value for m in sorted(history, key=lambda m: m.step)],
                    test_accuracy=run.data.metrics.get("test_accuracy"),
                    logged_by=run_user(run),
                    not_pooled=run.data.tags.get(NOT_POOLED_TAG),
                )
            )
    return sorted(runs, key=lambda r: (r.account, r.activation, r.seed or 0, r.run_name))


def _four(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def activation_order(runs: Sequence[ClassRun]) -> list[str]:
    """Sigmoid and ReLU first (the colours every report gives them), then the others by name."""
    found = {r.activation for r in runs}
    return [a for a in MAIN_ACTIVATIONS if a in found] + sorted(found - set(MAIN_ACTIVATIONS))


def report_tables(result: Pooled, epochs: int) -> dict[str, Any]:
    """What the template shows, as markdown tables and numbers."""
    import pandas as pd

    activations = activation_order(result.pooled)
    by_activation = {a: [r for r in result.pooled if r.activation == a] for a in activations}
    counts = {a: escape_counts(runs, epochs) for a, runs in by_activation.items()}
    summary_rows = []
    for activation, runs in by_activation.items():
        accuracy = summarize_values([r.test_accuracy for r in runs])
        summary_rows.append(
            {
                "activation": activation,
                "runs": len(runs),
                "test accuracy (mean)": _four(accuracy["mean"]),
                "95% interval": "—"
                if accuracy["ci_low"] is None
                else f"[{accuracy['ci_low']:.4f}, {accuracy['ci_high']:.4f}]",
                "min – max": f"{min(r.test_accuracy for r in runs):.4f} – "
                f"{max(r.test_accuracy for r in runs):.4f}",
                "never left chance": counts[activation]["never"],
            }
        )
    escape_rows = [
        {"escape epoch": epoch, **{a: counts[a][epoch] for a in activations}}
        for epoch in escape_counts([], epochs)
    ]
    lines = [
        {
            "account": r.account,
            "seed": r.seed,
            "activation": r.activation,
            "test accuracy": _four(r.test_accuracy),
            "escape epoch": format_escape(r.escape_epoch),
        }
        for r in result.pooled
    ]
    apart = [
        {"account": r.account, "run": r.run_name, "status": r.status, "why not pooled": why}
        for r, why in result.apart
    ]

    def table(rows: list[dict]) -> str:
        return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else ""

    return {
        "summary": table(summary_rows),
        "escapes": table(escape_rows),
        "lines": table(lines),
        "apart": table(apart),
        "by_activation": by_activation,
        "escape_counts": counts,
    }


def report_main(args: argparse.Namespace) -> None:
    import jinja2

    from pipeline.files import atomic_path
    from pipeline.plots import escape_count_figure, every_curve_figure, seed_strip_figure

    params = load_params(args.params)
    uri = _server()
    try:
        runs = read_class_runs(uri, params)
    except Exception as exc:
        raise _refused(uri, exc) from None
    reference = {k: str(v) for k, v in logged_params(params, TRAIN_KEYS).items()}
    result = pool(runs, reference)
    if not result.pooled:
        raise PipelineError(
            f"no finished, evaluated run of the class's params on {uri} yet; "
            f"{len(runs)} run(s) found, none poolable"
        )
    tables = report_tables(result, params.train.epochs)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline", "."), undefined=jinja2.StrictUndefined
    )
    markdown = environment.get_template("classroom.md.j2").render(
        tables=tables,
        students=result.students,
        runs=len(result.pooled),
        paired=paired_by_seed(result.pooled),
        epochs=params.train.epochs,
        experiment=params.mlflow.experiment,
        threshold=f"{ESCAPE_THRESHOLD:.2f}",
    )
    by_activation = tables["by_activation"]
    figures = {
        "curves.png": every_curve_figure(
            {a: [r.val_accuracy for r in runs] for a, runs in by_activation.items()},
            ESCAPE_THRESHOLD,
        ),
        "escape.png": escape_count_figure(tables["escape_counts"]),
        "accuracy.png": seed_strip_figure(
            {a: [r.test_accuracy for r in rs] for a, rs in tables["by_activation"].items()}
        ),
    }
    with atomic_path(Path(args.output)) as tmp:
        (tmp / "figures").mkdir(parents=True)
        (tmp / "report.md").write_text(markdown)
        for name, figure in figures.items():
            figure.savefig(tmp / "figures" / name, dpi=100)
    print(
        f"pooled {len(result.pooled)} run(s) of {len(result.students)} student(s) into "
        f"{args.output}/report.md; {len(result.apart)} run(s) listed apart"
    )


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
    commands = {"accounts": accounts_main, "run": run_main, "report": report_main}
    commands["certificate"] = certificate_main
    commands[args.command](args)


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
