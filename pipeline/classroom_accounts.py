"""A class's accounts on its tracking server: the class list, each student's experiment and model
names with MANAGE on them, and the tags that say whose they are and what to train.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow

from pipeline import store
from pipeline.errors import PipelineError
from pipeline.files import sha256_file
from pipeline.params import MAIN_ACTIVATIONS, Params, load_params

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


def server() -> str:
    """The class's tracking server (MLFLOW_TRACKING_URI), once it has answered."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        raise PipelineError(
            "set MLFLOW_TRACKING_URI to the class's tracking server (http://host:port), with "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        )
    store.check_server(uri)
    return uri


def refused(uri: str, exc: Exception) -> PipelineError:
    """The one line for a request the class's server refused."""
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
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.RestException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name)


def _ignore(code: str, call, *args) -> None:
    """call(*args), except that MLflow's error `code` is not an error."""
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
    uri = server()
    try:
        made, reclaimed = create_accounts(
            uri, params, students, args.data_url, sha256_file(args.archive), not args.no_logins
        )
    except PipelineError:
        raise
    except Exception as exc:
        raise refused(uri, exc) from None
    for line in reclaimed:
        print(line)
    print(f"{'account':<20} {'password':<16} {'seed':>4}  experiment")
    for student, password in made:
        shown = password or ("(unchanged)" if not args.no_logins else "(no logins)")
        print(
            f"{student.account:<20} {shown:<16} {student.seed:>4}  "
            f"{student_experiment(params, student.account)}"
        )


def class_experiments(uri: str) -> list:
    """The students' experiments on the server: those the teacher's command tagged."""
    experiments = mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1000)
    return [e for e in experiments if STUDENT_TAG in e.tags and SEED_TAG in e.tags]


def training_runs(uri: str, params: Params) -> list[tuple[str, Any, list[float]]]:
    """(student, run, its val_accuracy per epoch, epoch 1 first) for every training run (not
    deleted) in the class's student experiments: those named `<mlflow.experiment>-<student>`."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = [
        e
        for e in class_experiments(uri)
        if e.name == student_experiment(params, e.tags[STUDENT_TAG])
    ]
    found = []
    for experiment in experiments:
        runs = client.search_runs(
            [experiment.experiment_id], "tags.stage LIKE 'train_%'", max_results=1000
        )
        for run in runs:
            history = client.get_metric_history(run.info.run_id, "val_accuracy")
            curve = [m.value for m in sorted(history, key=lambda m: m.step)]
            found.append((experiment.tags[STUDENT_TAG], run, curve))
    return found
