import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pipeline import plots
from pipeline.report import RunResults, comparison_table, evidence, findings, ranking_table


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


def results(sig, relu, sig_share=0.2):
    test = {
        "sigmoid": {"test_accuracy": sig[-1], "test_loss": 1.5, "majority_share": sig_share},
        "relu": {"test_accuracy": relu[-1], "test_loss": 1.1, "majority_share": 0.12},
    }
    zeros = np.zeros((10, 10), int).tolist()
    details = {a: {"f1": [0.5] * 10, "confusion": zeros} for a in test}
    n_sig, n_relu = len(sig) + 1, len(relu) + 1
    diags = {
        "sigmoid": diagnostics(
            "sigmoid", [0.001] * n_sig, [0.01] * n_sig, [1.0] + [0.5] * len(sig)
        ),
        "relu": diagnostics("relu", [0.1] * n_relu, [0.05] * n_relu, [0.3] + [0.12] * len(relu)),
    }
    return RunResults(
        histories={"sigmoid": history(sig), "relu": history(relu)},
        diagnostics=diags,
        seed_histories={
            "sigmoid": history(sig).assign(seed=42),
            "relu": history(relu).assign(seed=42),
        },
        paired={},
        test=test,
        details=details,
        examples=pd.DataFrame(),
        class_names=list("abcdefghij"),
        validation_source="train",
    )


def test_findings_are_computed_from_the_numbers():
    lines = findings(results([0.1, 0.1, 0.4], [0.55, 0.62, 0.63], sig_share=0.9))
    assert lines[0].startswith("On the test set, ReLU reached accuracy 0.6300 and sigmoid 0.4000")
    assert "ReLU is ahead by 23.0 points" in lines[0]
    assert any("stayed at or below 0.15 until epoch 3" in line for line in lines)
    assert any("90% of its test predictions fall on one class" in line for line in lines)
    assert not any("relu:" in line and "one class" in line for line in lines)


def test_evidence_is_computed_from_the_diagnostics():
    lines = evidence(results([0.1, 0.1, 0.4], [0.55, 0.62, 0.63]))
    assert (
        "At initialisation (epoch 0), the loss gradient of the first layer (conv2d) kernel "
        "was smaller for sigmoid (0.001) than for ReLU (0.1), by a factor of 100."
    ) in lines
    assert any(
        "hidden dense layer kernel was smaller for sigmoid (0.01) than for ReLU (0.05), "
        "by a factor of 5." in line
        for line in lines
    )
    assert (
        "sigmoid: at epoch 0 the output layer's kernel gradient was 1e+03× the first layer's; at epoch 3, 1e+03×."
        in lines
    )
    assert any(
        line.startswith("sigmoid: 50.0% of dense outputs were saturated at epoch 0 and 25.0%")
        for line in lines
    )
    assert (
        "relu: 50.0% of dense units were dead at epoch 0 and 25.0% at epoch 3 (peak 50.0%, epoch 0)."
        in lines
    )
    assert any(
        "sigmoid: the most-predicted class took 100% of validation predictions at epoch 0" in line
        for line in lines
    )
    assert "sigmoid: escape epoch (first validation accuracy above 0.15): 3." in lines
    assert "relu: escape epoch (first validation accuracy above 0.15): 1." in lines


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
    for activation in ("sigmoid", "relu"):
        res.test[activation] |= {
            "seeds": 3,
            "test_accuracy_std": 0.01,
            "test_accuracy_ci_low": 0.3,
            "test_accuracy_ci_high": 0.5,
            "test_loss_std": None,
        }
    res.seed_histories["sigmoid"] = pd.concat(
        [
            history([0.1, 0.4]).assign(seed=1),
            history([0.2, 0.5]).assign(seed=2),
            history([0.1, 0.1]).assign(seed=3),
        ]
    )
    res.paired["test_accuracy"] = {
        "n": 3,
        "mean": 0.2,
        "std": 0.01,
        "ci_low": 0.175,
        "ci_high": 0.225,
    }
    lines = findings(res)
    assert (
        "Paired by seed over 3 seeds (same initial draw for both), ReLU − sigmoid test "
        "accuracy is +0.2000 (std 0.0100, 95% CI [+0.1750, +0.2250])."
    ) in lines
    assert "sigmoid: escape epoch per seed: 2, 1, never." in lines
    table = ranking_table(res).splitlines()
    assert table[2].startswith("| 1 | relu | 3 | 0.6300 ± 0.0100 [0.3000, 0.5000]")
    assert table[3].startswith("| 2 | sigmoid |")


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
