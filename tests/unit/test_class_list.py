"""The classroom's pure pieces: the class list, what is pooled and what is listed apart, escape
counts and the paired difference."""

from __future__ import annotations

import pytest

from pipeline.classroom import own_experiment, student_command
from pipeline.classroom_accounts import direct_grants, read_class_list, server_location
from pipeline.classroom_report import (
    ClassRun,
    activation_order,
    escape_counts,
    paired_by_seed,
    pool,
)
from pipeline.decide import MIXED, NOT_SETTLED, SUPPORTED
from pipeline.errors import PipelineError

REFERENCE = {"train.epochs": "3", "train.learning_rate": "0.001"}
PARAMS = {**REFERENCE, "train_images": "400", "val_images": "50"}


def a_run(
    account="ana", activation="sigmoid", seed=42, status="FINISHED", test=0.4, by=None, **params
):
    curve = {"sigmoid": [0.1, 0.1, 0.3], "relu": [0.5, 0.6, 0.6]}.get(activation, [0.2] * 3)
    return ClassRun(
        account, f"train_{activation}@{seed}", activation, seed, status,
        {**PARAMS, **params}, curve, test, by or account,
    )  # fmt: skip


def test_the_class_list_gives_seeds_in_order_and_keeps_given_passwords():
    students = read_class_list("# group A\nana\n\nben  s3cret   # his own\ncleo\n")
    assert [(s.account, s.seed, s.password) for s in students] == [
        ("ana", 42, None),
        ("ben", 43, "s3cret"),
        ("cleo", 44, None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ana\nana\n", "listed twice"),
        ("ana b c\n", "is not `account [password]`"),
        ("ana/../x\n", "is not `account [password]`"),
        ("# nobody\n", "names no student"),
    ],
)
def test_a_bad_class_list_is_refused_naming_the_line(text, message):
    with pytest.raises(PipelineError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_class_list(text)


def test_only_finished_evaluated_runs_of_the_class_params_and_data_are_pooled():
    runs = [
        a_run("ana"),
        a_run("ana", "relu", test=0.6),
        a_run("ben", seed=43),
        a_run("ben", "relu", seed=43, status="FAILED"),
        a_run("cleo", seed=44, status="RUNNING"),
        a_run("dev", seed=45, **{"train.epochs": "1"}),
        a_run("eli", seed=46, test=None),
        a_run("fay", seed=47, train_images="2000"),
    ]
    result = pool(runs, REFERENCE)
    assert [(r.account, r.activation) for r in result.pooled] == [
        ("ana", "sigmoid"),
        ("ana", "relu"),
        ("ben", "sigmoid"),
    ]
    assert result.students == ["ana", "ben"]
    why = {r.account + "/" + r.activation: reason for r, reason in result.apart}
    assert why["ben/relu"] == "failed" and why["cleo/sigmoid"] == "running"
    assert why["dev/sigmoid"] == "other params: train.epochs 1 (class: 3)"
    assert why["eli/sigmoid"].startswith("not evaluated")
    assert why["fay/sigmoid"].startswith("other data: 2000 training")


def test_only_runs_logged_by_the_experiments_own_student_are_pooled():
    left = a_run("ana", "relu", seed=42, by="ana")
    left.not_pooled = "in the experiment before ana had it; mal (MANAGE) held rights there"
    runs = [a_run("ana"), a_run("ana", "relu", by="mal"), left, a_run("ben", seed=43)]
    result = pool(runs, REFERENCE)
    assert [(r.account, r.logged_by) for r in result.pooled] == [("ana", "ana"), ("ben", "ben")]
    assert [why for _, why in result.apart] == ["logged by mal, not ana", left.not_pooled]


# The shape of a basic-auth server's `users/list` answer (MLflow 3.17).
USERS = [
    {"id": 1, "username": "teacher", "is_admin": True, "roles": [
        {"id": 9, "name": "__user_1__", "permissions": [
            {"resource_type": "experiment", "resource_pattern": "3", "permission": "MANAGE"}]}]},
    {"id": 2, "username": "mal", "is_admin": False, "roles": [
        {"id": 1, "name": "__user_2__", "permissions": [
            {"resource_type": "experiment", "resource_pattern": "3", "permission": "MANAGE"},
            {"resource_type": "registered_model", "resource_pattern": "x-ana-relu",
             "permission": "EDIT"}]},
        {"id": 5, "name": "assistants", "permissions": [
            {"resource_type": "experiment", "resource_pattern": "*", "permission": "EDIT"}]}]},
    {"id": 3, "username": "ana", "is_admin": False, "roles": []},
]  # fmt: skip


def test_the_grants_counted_are_each_accounts_own_not_admins_nor_admin_made_roles():
    found = {(g.account, g.kind, g.resource, g.permission) for g in direct_grants(USERS)}
    assert found == {
        ("mal", "experiment", "3", "MANAGE"),
        ("mal", "registered_model", "x-ana-relu", "EDIT"),
    }


def test_a_student_finds_the_experiment_the_teacher_gave_them_not_a_lookalike():
    from types import SimpleNamespace

    def experiment(name, student):
        return SimpleNamespace(name=name, tags={"class.student": student})

    real, decoy = experiment("x-ana", "ana"), experiment("mals", "ana")
    others = [decoy, experiment("x-ben", "ben"), real]
    assert own_experiment(others, "ana", "x") is real  # the first run: params.yaml says x
    assert own_experiment(others, "ana", "x-ana") is real  # after it: x-ana
    assert own_experiment(others, "ana", "x-ben") is real  # aimed at ben's by hand
    assert own_experiment(others, "cleo", "x") is None
    lookalike = experiment("y-ana", "ana")
    assert own_experiment([lookalike, real], "ana", "x") is real
    with pytest.raises(PipelineError, match=r"several experiments are tagged as ana's"):
        own_experiment([real, lookalike], "ana", "x-ben")


def test_where_the_server_keeps_an_experiments_artifacts():
    assert server_location("mlflow-artifacts:/0", "7") == "mlflow-artifacts:/7"
    assert server_location("s3://bucket/mlruns/0", "12") == "s3://bucket/mlruns/12"
    assert server_location("file:///srv/elsewhere", "7") is None


def test_escape_counts_and_the_paired_difference():
    runs = [a_run("ana"), a_run("ana", "relu", test=0.6), a_run("ben", seed=43, test=0.2)]
    runs[2].val_accuracy = [0.1, 0.1, 0.1]
    assert escape_counts(runs[::2], 3) == {"1": 0, "2": 0, "3": 1, "never": 1}
    paired = paired_by_seed(runs)  # ben has no ReLU run: one pair
    assert paired.n == 1 and paired.differences[42] == pytest.approx(0.2)
    assert paired.verdict == NOT_SETTLED  # one seed settles nothing
    assert paired_by_seed(runs[::2]) is None


def test_the_class_comparison_counts_seeds_when_some_never_left_chance():
    runs = []
    for i, student in enumerate(("ana", "ben", "cleo", "dan", "eve")):
        runs += [
            a_run(student, seed=42 + i, test=0.45),
            a_run(student, "relu", seed=42 + i, test=0.6),
        ]
    assert paired_by_seed(runs).verdict == SUPPORTED and not paired_by_seed(runs).split
    runs[0].val_accuracy = [0.1, 0.1, 0.1]  # ana's sigmoid never left chance
    runs[0].test_accuracy = 0.1
    counted = paired_by_seed(runs)
    assert counted.split and counted.verdict == SUPPORTED
    assert counted.format().startswith("median +15.0 percentage points, 5 of 5 seeds above 1")
    runs[3].test_accuracy = 0.45  # ben's ReLU no better than his sigmoid: 4 of 5 seeds
    assert paired_by_seed(runs).verdict == MIXED


def test_sigmoid_and_relu_come_first():
    runs = [a_run(activation=a) for a in ("tanh", "relu", "elu", "sigmoid")]
    assert activation_order(runs) == ["sigmoid", "relu", "elu", "tanh"]


def test_a_students_command_trains_their_seed_into_their_experiment():
    tags = {
        "class.seed": "44",
        "class.data_url": "http://t:8000/a.tar.gz",
        "class.data_sha256": "0" * 64,
    }
    command = student_command("cifar10-activations-cleo", tags, "tanh")
    assert command[:3] == ["dvc", "exp", "run"]
    assert "mlflow.experiment=cifar10-activations-cleo" in command
    assert "train.seeds=[44]" in command and "train.extra_activations=[tanh]" in command
    assert "data.url=http://t:8000/a.tar.gz" in command


def test_the_pooled_figures_draw_every_run_and_every_count():
    from pipeline.plots import escape_count_figure, every_curve_figure

    curves = {"sigmoid": [[0.1, 0.1, 0.3], [0.1, 0.2, 0.3]], "relu": [[0.5, 0.6, 0.6]]}
    (ax,) = every_curve_figure(curves, 0.15).axes
    run_lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert len(run_lines) == 3
    assert {line.get_color() for line in run_lines[:2]} != {run_lines[2].get_color()}
    assert ax.get_title() == "Every run's validation curve" and ax.get_ylim() == (0, 1)
    counts = {"sigmoid": {"1": 0, "2": 1, "never": 1}, "relu": {"1": 2, "2": 0, "never": 0}}
    (ax,) = escape_count_figure(counts).axes
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == [0, 1, 1, 2, 0, 0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "never"]
