import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline import plots
from pipeline.metrics import escape_epoch
from pipeline.report import (
    RunResults,
    comparison_table,
    evidence,
    evidence_table,
    findings,
    ranking_table,
)
from pipeline.results import Evaluation, ModelDetails, Paired, Scores, Spread, Training


def history(val_acc):
    n = len(val_acc)
    return pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "loss": [2.0] * n,
            "accuracy": val_acc,
            "val_loss": [2.0] * n,
            "val_accuracy": val_acc,
        }
    )


def diagnostics(activation, conv_grads, dense_grads, plateau):
    n = len(conv_grads)
    frame = pd.DataFrame(
        {
            "epoch": range(n),
            "grad_norm/conv2d/kernel": conv_grads,
            "grad_norm/dense/kernel": dense_grads,
            "grad_norm/dense_1/kernel": [1.0] * n,
            "plateau_share": plateau,
        }
    )
    kind = "saturated_fraction" if activation == "sigmoid" else "dead_fraction"
    frame[f"{kind}/dense"] = np.linspace(0.5, 0.25, n)
    return frame


def scores(accuracy, share=0.12, seeds=1, std=None):
    spread = (std, None, None) if std is None else (std, accuracy - 0.1, accuracy + 0.1)
    return Scores(Spread(accuracy, *spread), Spread(1.5, None, None, None), share, seeds)


def training(val_acc, per_seed=None):
    escaped = escape_epoch(val_acc)
    best = int(np.argmax(val_acc)) + 1
    return Training(len(val_acc), max(val_acc), best, escaped, per_seed or {42: escaped})


def results(sig, relu, sig_share=0.2, extra=None):
    """Two activations (and an `extra` one with its own curve), one seed each."""
    curves = {"sigmoid": sig, "relu": relu, **(extra or {})}
    test = {a: scores(v[-1]) for a, v in curves.items()}
    test["sigmoid"] = scores(sig[-1], share=sig_share)
    zeros = np.zeros((10, 10), int).tolist()
    diags = {
        a: diagnostics(
            a,
            [0.001 if a == "sigmoid" else 0.1] * (len(v) + 1),
            [0.01 if a == "sigmoid" else 0.05] * (len(v) + 1),
            [1.0 if a == "sigmoid" else 0.3] + [0.5 if a == "sigmoid" else 0.12] * len(v),
        )
        for a, v in curves.items()
    }
    evaluation = Evaluation(
        test=test,
        training={a: training(v) for a, v in curves.items()},
        details={a: ModelDetails([0.5] * 10, zeros, {42: v[-1]}) for a, v in curves.items()},
        paired={},
        class_names=list("abcdefghij"),
    )
    return RunResults(
        histories={a: history(v) for a, v in curves.items()},
        diagnostics=diags,
        seed_histories={a: history(v).assign(seed=42) for a, v in curves.items()},
        evaluation=evaluation,
        examples=pd.DataFrame(),
        validation_source="train",
    )


def test_findings_are_computed_from_the_numbers():
    lines = findings(results([0.1, 0.1, 0.4], [0.55, 0.62, 0.63], sig_share=0.9))
    assert lines[0].startswith("On the test set, ReLU reached accuracy 0.6300 and sigmoid 0.4000")
    assert "ReLU is ahead by 23.0 points" in lines[0]
    assert any("90% of its test predictions fall on one class" in line for line in lines)
    assert not any("relu:" in line and "one class" in line for line in lines)
    assert not any("other activations" in line for line in lines)  # there are none


def test_findings_name_the_best_and_worst_of_the_rest():
    extra = {"tanh": [0.3, 0.5], "elu": [0.5, 0.58], "gelu": [0.5, 0.55]}
    lines = findings(results([0.1, 0.4], [0.6, 0.63], extra=extra))
    assert (
        "Of the other activations, elu scored highest (0.5800) and tanh lowest (0.5000)." in lines
    )


def test_evidence_table_has_a_row_per_activation_from_the_files():
    table = evidence_table(results([0.1, 0.1, 0.4], [0.55, 0.62, 0.63])).splitlines()
    assert table[0].startswith("| activation | escape epoch per seed | best epoch")
    sigmoid, relu = table[2], table[3]
    # escape epoch 3 (train's), best epoch 3, gradient 0.001 at epoch 0, peak saturation 50%
    # at epoch 0 in the dense layer, 50% on one class after epoch 1.
    assert sigmoid == "| sigmoid | 3 | 3 | 0.001 | 50.0% saturated (dense, epoch 0) | 50% |"
    assert relu == "| relu | 1 | 3 | 0.1 | 50.0% dead (dense, epoch 0) | 12% |"


def test_evidence_contrasts_sigmoid_with_relu_then_the_rest():
    lines = evidence(results([0.1, 0.1, 0.4], [0.55, 0.62, 0.63], extra={"tanh": [0.3, 0.5]}))
    assert lines[0] == (
        "At initialisation (epoch 0), the loss gradient of the first layer's kernel was smaller "
        "for sigmoid (0.001) than for ReLU (0.1), by a factor of 100."
    )
    assert (
        "Escape epochs (first validation accuracy above 0.15), by seed: sigmoid 3; ReLU 1."
        in (lines[1])
    )
    assert "50% of sigmoid's validation predictions and 12% of ReLU's" in lines[1]
    assert lines[2] == "Every other activation left chance after its first epoch in every seed."
    late = evidence(results([0.1, 0.4], [0.6, 0.63], extra={"tanh": [0.1, 0.12]}))
    assert late[2] == (
        "Of the other activations, tanh (escape epochs never) needed more than one epoch to "
        "leave chance in some seed."
    )


def test_comparison_table_puts_tutorial_numbers_beside_ours():
    table = comparison_table(results([0.1, 0.4], [0.6, 0.63]))
    sigmoid_row = next(row for row in table.splitlines() if row.startswith("| sigmoid"))
    assert "| 0.4000 |" in sigmoid_row and "| 0.4672 | 1.4827 |" in sigmoid_row


@pytest.mark.parametrize(
    "build",
    [
        lambda: plots.activation_figure(),
        lambda: plots.sample_grid(
            np.zeros((20, 32, 32, 3), np.uint8), np.arange(20) % 10, list("abcdefghij")
        ),
        lambda: plots.curves_figure({"sigmoid": history([0.1, 0.2]), "relu": history([0.5, 0.6])}),
        lambda: plots.confusion_figure({"relu": np.eye(3, dtype=int)}, ["a", "b", "c"]),
        lambda: plots.gradient_figure({"relu": diagnostics("relu", [1, 2], [1, 2], [0.2, 0.1])}),
        lambda: plots.units_figure({"sigmoid": diagnostics("sigmoid", [1, 2], [1, 2], [1, 0.2])}),
    ],
)
def test_figures_render(build, tmp_path):
    figure = build()
    assert isinstance(figure, Figure)
    figure.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_curves_figure_has_both_models_on_each_chart():
    fig = plots.curves_figure({"sigmoid": history([0.1, 0.2]), "relu": history([0.5, 0.6])})
    for ax in fig.axes:
        labels = [line.get_label() for line in ax.get_lines()]
        assert "sigmoid validation" in labels and "relu validation" in labels


def test_curves_figure_shades_the_seed_spread_only_with_several_seeds():
    seeds = pd.concat([history([0.1, 0.2]).assign(seed=1), history([0.3, 0.4]).assign(seed=2)])
    means = {"sigmoid": history([0.2, 0.3]), "relu": history([0.5, 0.6])}
    fig = plots.curves_figure(means, {"sigmoid": seeds, "relu": seeds[seeds["seed"] == 1]})
    accuracy_ax = fig.axes[0]
    for ax in fig.axes:
        assert len(ax.collections) == 1  # sigmoid's two seeds; relu has one seed, so no band
    band = accuracy_ax.collections[0].get_paths()[0].vertices[:, 1]
    assert (band.min(), band.max()) == pytest.approx((0.1, 0.4))


def test_several_seeds_add_spread_paired_difference_and_ranking():
    res = results([0.1, 0.4], [0.6, 0.63])
    per_seed = {1: 2, 2: 1, 3: None}
    res.evaluation.test["relu"] = scores(0.63, seeds=3, std=0.01)
    res.evaluation.test["sigmoid"] = scores(0.4, seeds=3, std=0.02)
    res.evaluation.training["sigmoid"] = training([0.1, 0.4], per_seed)
    res.evaluation.paired["test_accuracy"] = Paired(3, Spread(0.2, 0.01, 0.175, 0.225))
    lines = findings(res)
    assert (
        "Paired by seed over 3 seeds (same initial draw for both), ReLU − sigmoid test "
        "accuracy is +0.2000 ± 0.0100 [+0.1750, +0.2250] (mean ± std [95% CI])."
    ) in lines
    assert "| sigmoid | 2, 1, never |" in evidence_table(res)
    table = ranking_table(res).splitlines()
    assert table[2].startswith("| 1 | relu | 3 | 0.6300 ± 0.0100 [0.5300, 0.7300]")
    assert table[3].startswith("| 2 | sigmoid | 3 |")


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
