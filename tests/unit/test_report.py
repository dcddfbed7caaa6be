import numpy as np
import pandas as pd
import pytest
from results_records import model_details

from pipeline import plots, probe_columns
from pipeline.escape import escape_epoch
from pipeline.mechanism import reconcile
from pipeline.model import TUTORIAL
from pipeline.params import DataParams, EvaluateParams, MlflowParams, Params, TrainParams
from pipeline.report import Evidence, plateau, render_markdown, results_table
from pipeline.results import (
    PARTS,
    EvaluationFiles,
    MeanTestMetrics,
    RunResults,
    TrainingSummary,
)


def history(val_acc, train_acc=None):
    n = len(val_acc)
    return pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "loss": [2.0] * n,
            "accuracy": train_acc or val_acc,
            "val_loss": np.linspace(2.0, 1.0, n),
            "val_accuracy": val_acc,
        }
    )


def diagnostics(activation, epochs, conv_grad, dense_grad, slope, mean_out):
    """A probe frame shaped like train's: first convolution, hidden dense, output."""
    n = epochs + 1
    frame = pd.DataFrame(
        {
            "epoch": range(n),
            "grad_norm/conv2d/kernel": [conv_grad] * n,
            "grad_norm/dense/kernel": [dense_grad] * n,
            "grad_norm/dense_1/kernel": [1.0] * n,
            "mean_activation/conv2d": [mean_out] * n,
            "mean_slope/conv2d": [slope] * n,
            "mean_activation/dense": [mean_out] * n,
            "mean_slope/dense": [slope] * n,
            "plateau_share": [1.0] + [0.2] * epochs,
        }
    )
    for kind in ("saturated_fraction", "dead_fraction"):
        frame[f"{kind}/conv2d"] = 0.1
        frame[f"{kind}/dense"] = 0.6
    return frame


def steps(escape_at, per_epoch=10):
    values = [0.1 if s < escape_at else 0.5 for s in range(0, 2 * per_epoch + 1, 2)]
    return pd.DataFrame(
        {
            "step": range(0, 2 * per_epoch + 1, 2),
            "epoch": [s / per_epoch for s in range(0, 2 * per_epoch + 1, 2)],
            "val_accuracy": values,
        }
    )


def scores(accuracy, seeds=1, std=None):
    spread = (None, None, None) if std is None else (std, accuracy - 0.1, accuracy + 0.1)
    parts = {f"test_accuracy_{p}": v for p, v in zip(PARTS, spread, strict=True)}
    return MeanTestMetrics(
        test_accuracy=accuracy,
        test_loss=1.5,
        **dict.fromkeys(("macro_precision", "macro_recall", "macro_f1"), accuracy),
        majority_share=0.12,
        **parts,
        **{f"test_loss_{p}": None for p in PARTS},
        seeds=seeds,
    )


def training(val_acc, escape_step):
    best = int(np.argmax(val_acc)) + 1
    escaped = escape_epoch(val_acc)
    return TrainingSummary(
        epochs=len(val_acc),
        loss=1.0,
        accuracy=val_acc[-1],
        val_loss=1.0,
        val_accuracy=val_acc[-1],
        best_val_accuracy=max(val_acc),
        best_epoch=best,
        escape_epoch=escaped,
        escape_epoch_per_seed={42: escaped},
        escape_step_per_seed={42: escape_step},
        steps_per_epoch=10,
        step_curve_images=50,
        seeds=1,
        parameters=1000,
        train_seconds=1.0,
        diagnostics_seconds=0.1,
    )


def results(sigmoid_grad=0.01, relu_grad=0.1, sigmoid_slope=0.02, relu_slope=0.5):
    """sigmoid plateaus for 12 steps and underfits; ReLU learns at once and overfits."""
    curves = {"sigmoid": [0.1, 0.3, 0.4], "relu": [0.55, 0.62, 0.63]}
    train_acc = {"sigmoid": [0.1, 0.3, 0.41], "relu": [0.6, 0.75, 0.9]}
    escape = {"sigmoid": 12, "relu": 2}
    diags = {
        "sigmoid": diagnostics("sigmoid", 3, sigmoid_grad, 1.5, sigmoid_slope, 0.48),
        "relu": diagnostics("relu", 3, relu_grad, 0.4, relu_slope, 0.03),
    }
    zeros = np.zeros((10, 10), int).tolist()
    evaluation = EvaluationFiles(
        test={a: scores(v[-1]) for a, v in curves.items()},
        training={a: training(v, escape[a]) for a, v in curves.items()},
        details={a: model_details({42: v[-1]}, zeros) for a, v in curves.items()},
        paired={},
        class_names=list("abcdefghij"),
    )
    histories = {a: history(v, train_acc[a]) for a, v in curves.items()}
    histories["relu"]["val_loss"] = [1.2, 1.1, 1.3]  # lowest at epoch 2: overfits after
    return RunResults(
        histories=histories,
        diagnostics=diags,
        seed_histories={a: h.assign(seed=42) for a, h in histories.items()},
        steps={a: steps(escape[a]) for a in curves},
        seed_steps={a: steps(escape[a]).assign(seed=42) for a in curves},
        evaluation=evaluation,
        examples=pd.DataFrame(),
        validation_source="train",
    )


def evidence(run=None, study=None, timing=None):
    return Evidence(run or results(), study or {}, timing)


def test_the_larger_dense_gradient_is_explained_by_its_inputs():
    run = results()
    lines = reconcile(run.diagnostics["sigmoid"], run.diagnostics["relu"])
    assert lines[0].startswith("**The hidden dense layer's gradient is larger with sigmoid** (1.5")
    assert "averaging 0.48, with ReLU 0.030, 16.0× smaller" in lines[0]
    assert "0.5 for ReLU against 0.02 for sigmoid, 25.0×" in lines[1]
    # With the gradients the other way round there is nothing to explain.
    run.diagnostics["sigmoid"]["grad_norm/dense/kernel"] = 0.1
    assert not reconcile(run.diagnostics["sigmoid"], run.diagnostics["relu"])[0].startswith(
        "**The hidden"
    )


def test_plateau_names_each_seeds_escape_step():
    lines = plateau(results())
    assert lines[0].startswith("**sigmoid**: seed 42 left it after 12 steps (1.20 epochs)")
    assert lines[1].startswith("**relu**: seed 42 left it after 2 steps (0.20 epochs)")


def test_results_table_puts_the_tutorial_beside_ours():
    rows = results_table(results()).splitlines()
    assert rows[2].startswith("| relu ") and "| 0.6300 " in rows[2] and "| 0.6323 " in rows[2]
    assert rows[3].startswith("| sigmoid ") and "| 0.4672 " in rows[3]


def report_params(url: str = "https://example.org/a.tar.gz") -> Params:
    return Params(
        data=DataParams(
            url=url,
            sha256="0" * 64,
            val_size=5000,
            train_limit=0,
            seed=42,
        ),
        model=TUTORIAL,
        train=TrainParams(
            epochs=3,
            batch_size=64,
            learning_rate=0.001,
            seeds=(42,),
            distribution="none",
            extra_activations=(),
        ),
        evaluate=EvaluateParams(n_examples=0),
        mlflow=MlflowParams(experiment="x"),
    )


def test_the_report_renders_every_section():
    text = render_markdown(evidence(), report_params())
    assert text.startswith("# Sigmoid vs ReLU on ")  # the template's macros leave no blank line
    for heading in (
        "## The plateau",
        "## Results",
        "## The tutorial's claims",
        "## When to use which",
    ):
        assert heading in text
    assert "{{" not in text and "{%" not in text
    # No study in this checkout: every claim and question says so, and none is judged.
    assert text.count("*Not run yet.*") == 9 + 3
    assert text.count("not in this checkout yet.") == 9 + 3
    assert "url: https://example.org/a.tar.gz" in text and "local copy" not in text


@pytest.mark.parametrize(
    "url", ["../shared/data/cifar-10-python.tar.gz", "file:///srv/class/cifar-10-python.tar.gz"]
)
def test_a_local_archive_is_shown_by_its_file_name_alone(url):
    text = render_markdown(evidence(), report_params(url))
    assert (
        "  url: cifar-10-python.tar.gz\n" in text
        and "shared/data" not in text
        and "/srv/" not in text
    )
    assert "This run read a local copy of the archive" in text


def test_layer_labels_are_names_a_reader_knows():
    frame = diagnostics("relu", 1, 0.1, 0.1, 0.5, 0.1)
    assert probe_columns.layer_labels(frame) == {
        "conv2d": "first convolution",
        "dense": "hidden dense",
        "dense_1": "output",
    }
    deep = pd.DataFrame(
        columns=[
            "grad_norm/conv2d/kernel",
            "grad_norm/conv2d_1/kernel",
            "mean_slope/conv2d_act",
            "grad_norm/dense/kernel",
            "grad_norm/dense_1/kernel",
            "grad_norm/dense_2/kernel",
        ]
    )
    labels = probe_columns.layer_labels(deep)
    assert labels["conv2d_1"] == "convolution 2" and labels["conv2d_act"] == "convolution 1"
    assert labels["dense_1"] == "hidden dense 2" and labels["dense_2"] == "output"


def test_step_curve_figure_draws_each_activation_and_the_lines_that_matter():
    run = results()
    fig = plots.step_curve_figure(run.steps, run.seed_steps, 0.15)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["sigmoid", "relu", "chance (0.10)", "escape (0.15)"]
    sigmoid = ax.get_lines()[0]
    assert list(sigmoid.get_ydata()) == run.steps["sigmoid"]["val_accuracy"].tolist()
    assert ax.get_xlabel().startswith("epoch") and fig.legends  # one legend, below the chart


def test_gradient_and_units_figures_use_reader_names():
    diags = results().diagnostics
    (ax,) = plots.gradient_ratio_figure(diags).axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["first convolution", "hidden dense", "output", "as large as ReLU's"]
    assert list(lines["first convolution"].get_ydata()) == pytest.approx([0.1] * 4)  # 0.01 / 0.1
    assert list(lines["hidden dense"].get_ydata()) == pytest.approx([1.5 / 0.4] * 4)
    units = plots.units_figure(diags)
    slope_ax = units.axes[0]
    assert "sigmoid, hidden dense" in [line.get_label() for line in slope_ax.get_lines()]
    assert slope_ax.get_title().startswith("Mean slope")


def test_confusion_matrices_sit_in_a_grid_with_one_scale():
    confusions = {a: np.eye(3, dtype=int) for a in ("sigmoid", "relu", "tanh")}
    confusions["tanh"][0] = [1, 2, 0]  # row a: a third right, two thirds taken for b
    fig = plots.confusion_figure(confusions, ["a", "b", "c"], seed=42)
    drawn = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in drawn] == [f"{a}, seed 42" for a in confusions]
    assert len(fig.axes) == 5  # a 2 × 2 grid (one left blank) and one colour bar
    cells = [t.get_text() for t in drawn[2].texts]
    assert cells[:3] == ["33", "67", "0"] and cells[4] == "100"  # whole percent


def test_curves_figure_shades_the_seed_spread_only_with_several_seeds():
    seeds = pd.concat([history([0.1, 0.2]).assign(seed=1), history([0.3, 0.4]).assign(seed=2)])
    means = {"sigmoid": history([0.2, 0.3]), "relu": history([0.5, 0.6])}
    fig = plots.curves_figure(means, {"sigmoid": seeds, "relu": seeds[seeds["seed"] == 1]})
    for ax in fig.axes:
        assert len(ax.collections) == 1  # sigmoid's two seeds; relu has one seed, so no band
        labels = [line.get_label() for line in ax.get_lines()]
        assert "sigmoid validation" in labels and "relu validation" in labels
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert (band.min(), band.max()) == pytest.approx((0.1, 0.4))


def test_writing_the_report_keeps_the_studies_beside_it(tmp_path):
    from matplotlib.figure import Figure

    from pipeline.report import write_report

    study = tmp_path / "studies" / "five-seeds" / "report.md"
    study.parent.mkdir(parents=True)
    study.write_text("a study")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "old.png").write_bytes(b"stale")
    write_report(tmp_path, "# report\n", {"curves.png": Figure()})
    assert (tmp_path / "report.md").read_text() == "# report\n"
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["curves.png"]
    assert study.read_text() == "a study"


def test_an_absent_study_reads_as_empty(tmp_path):
    from pipeline.studies import read_study

    assert read_study(tmp_path / "absent") == {}


def test_the_order_of_events_through_the_plateau_follows_the_step_curve():
    from pipeline.mechanism import adam_note, collapsed_before_escape, order_of_events

    steps = pd.DataFrame(
        {
            "step": [0, 32, 64, 96],
            "val_accuracy": [0.1, 0.1, 0.1, 0.3],
            "mean_slope/dense": [0.22, 0.05, 0.01, 0.02],
        }
    )
    line = order_of_events(steps, 96, "sigmoid", {"dense": "hidden dense"})
    assert line.startswith("**sigmoid**, seed-mean curve: the hidden dense layer's mean slope")
    assert "went from 0.22 to a low of 0.01, below a tenth of its start by step 64" in line
    assert line.endswith("validation accuracy left chance at step 96.")
    assert collapsed_before_escape(steps, 96) and not collapsed_before_escape(steps, 32)
    assert "the order this explanation needs" in adam_note(True)
    assert adam_note(False).endswith("does not show that order.")
    assert order_of_events(steps[["step", "val_accuracy"]], None, "relu", {}) is None


def test_plateau_figure_names_each_hidden_layer_on_one_step_axis():
    frame = pd.DataFrame(
        {
            "step": [0, 32, 64],
            "val_accuracy": [0.1, 0.1, 0.3],
            "mean_slope/conv2d": [0.2, 0.1, 0.05],
            "mean_slope/dense": [0.22, 0.01, 0.02],
            "saturated_fraction/conv2d": [0.0, 0.1, 0.2],
            "saturated_fraction/dense": [0.0, 0.9, 0.8],
        }
    )
    labels = {"conv2d": "first convolution", "dense": "hidden dense", "dense_1": "output"}
    fig = plots.plateau_figure({"sigmoid": frame, "relu": frame}, labels, 0.15)
    accuracy, slope, flat = fig.axes
    assert [line.get_label() for line in accuracy.get_lines()][:2] == ["sigmoid", "relu"]
    assert [line.get_label() for line in slope.get_lines()] == [
        "sigmoid, first convolution",
        "sigmoid, hidden dense",
        "relu, first convolution",
        "relu, hidden dense",
    ]
    assert list(flat.get_lines()[1].get_ydata()) == [0.0, 0.9, 0.8]
    assert slope.get_yscale() == "log" and flat.get_xlabel() == "training step"


def test_study_figure_draws_a_seed_that_never_left_chance_hollow():
    values = {"baseline: σ": {42: 0.1, 43: 0.45, 44: 0.46}, "baseline: ReLU": {42: 0.6, 43: 0.61}}
    stuck = {"baseline: σ": {42: True}}
    (ax,) = plots.study_seeds_figure(values, stuck).axes
    filled, hollow = ax.collections[0], ax.collections[1]
    assert len(filled.get_offsets()) == 2 and len(hollow.get_offsets()) == 1
    assert hollow.get_offsets()[0][1] == 0.1
    assert [t.get_text() for t in ax.get_xticklabels()] == list(values)
