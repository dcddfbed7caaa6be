"""The activation-cost tool's arithmetic: paired ratios and their interval, the pairing order,
the loops per sample, the activations' share of a training step; and the settings and outputs
it refuses before measuring."""

from __future__ import annotations

import pytest
from activation_cost import (
    PROBES,
    SHAPES,
    loops_for,
    main,
    pair_order,
    paired_summary,
    summarize,
    summary_lines,
)

from pipeline.cli import run_cli

# Noisy relu-like times; sigmoid's the same times two, with a noise of its own.
B = [1.00, 1.10, 0.95, 1.30, 1.02, 0.98, 1.20, 1.05, 0.90, 1.15]
NOISE = [1.02, 0.97, 1.01, 0.99, 1.03, 0.98, 1.00, 1.02, 0.99, 0.98]


def test_exactly_twice_as_slow_gives_ratio_two():
    summary = paired_summary([2 * b for b in B], B)
    ratio = summary["ratio"]
    assert ratio["median"] == pytest.approx(2.0)
    assert ratio["geometric_mean"] == pytest.approx(2.0)
    assert ratio["ci_low"] <= 2.0 <= ratio["ci_high"]
    assert ratio["ci_low"] > 1.0
    assert summary["a_median"] == pytest.approx(2 * summary["b_median"])
    assert summary["difference"]["median"] == pytest.approx(1.035)  # a - b = b; its median


def test_noisy_twice_as_slow_has_an_interval_around_two_that_excludes_one():
    summary = paired_summary([2 * b * e for b, e in zip(B, NOISE, strict=True)], B)
    ratio = summary["ratio"]
    assert ratio["ci_low"] < 2.0 < ratio["ci_high"]
    assert ratio["ci_low"] > 1.0
    assert ratio["per_sample"] == pytest.approx([2 * e for e in NOISE])
    difference = summary["difference"]
    assert 0 < difference["ci_low"] < difference["mean"] < difference["ci_high"]


def test_no_difference_gives_an_interval_containing_one():
    summary = paired_summary([b * e for b, e in zip(B, NOISE, strict=True)], B)
    assert summary["ratio"]["ci_low"] < 1.0 < summary["ratio"]["ci_high"]
    assert summary["difference"]["ci_low"] < 0 < summary["difference"]["ci_high"]


def test_alternating_order_is_balanced():
    first = pair_order(10)
    assert first == ["sigmoid", "relu"] * 5
    a_first = [f == "sigmoid" for f in first]
    order = paired_summary([2 * b for b in B], B, a_first)["order"]
    assert (order["a_first"], order["b_first"], order["balanced"]) == (5, 5, True)
    assert "warning" not in order
    assert pair_order(3) == ["sigmoid", "relu", "sigmoid"]  # one more is as even as odd gets
    odd = paired_summary([2, 2, 2], [1, 1, 1], [True, False, True])["order"]
    assert odd["balanced"]


def test_uneven_order_is_noticed_and_its_effect_shown():
    # a is 10% slower when it goes second (a warm cache for whoever goes first).
    a_first = [True] * 8 + [False] * 2
    a = [2 * b * (1.0 if first else 1.1) for b, first in zip(B, a_first, strict=True)]
    order = paired_summary(a, B, a_first)["order"]
    assert (order["a_first"], order["b_first"], order["balanced"]) == (8, 2, False)
    assert "uneven order" in order["warning"]
    assert order["ratio_when_a_first"] == pytest.approx(2.0)
    assert order["ratio_when_b_first"] == pytest.approx(2.2)
    everyone_first = paired_summary(a, B, [True] * 10)["order"]
    assert not everyone_first["balanced"]
    assert everyone_first["ratio_when_b_first"] is None


@pytest.mark.parametrize(
    ("a", "b", "a_first", "message"),
    [
        ([1, 2], [1], None, "equal lengths"),
        ([1], [1], None, "at least two"),
        ([1, 0], [1, 1], None, "positive"),
        ([1, 1], [1, 1], [True], "orders"),
    ],
)
def test_refuses_what_it_cannot_summarize(a, b, a_first, message):
    with pytest.raises(ValueError, match=message):
        paired_summary(a, b, a_first)


def test_loops_reach_the_target():
    assert loops_for(0.003, 0.1) == 34  # 33 loops would take 0.099 s
    assert loops_for(0.5, 0.1) == 1
    assert loops_for(0.0, 0.1) == 1


def raw_samples(step_sigmoid: float, step_relu: float) -> dict:
    """Two samples per probe: sigmoid's activation probes cost 2 s per call and relu's 1 s,
    over `calls_per_sample` calls; the steps as given."""

    def probe(calls: int, sig: float, relu: float) -> dict:
        return {
            "shape": [64],
            "loops_per_sample": calls,
            "calls_per_sample": calls,
            "seconds": {"sigmoid": [sig * calls] * 2, "relu": [relu * calls, relu * calls]},
        }

    probes = {name: probe(10, 2.0, 1.0) for name in PROBES}
    probes["train_step"] = probe(4, step_sigmoid, step_relu)
    return {"first": ["sigmoid", "relu"], "probes": probes}


def test_summary_of_a_measurement():
    summary = summarize(raw_samples(step_sigmoid=40.0, step_relu=20.0))
    assert list(summary["probes"]) == list(PROBES)
    conv = summary["probes"]["conv_forward_backward"]
    assert conv["seconds_per_call"] == {"sigmoid": 2.0, "relu": 1.0}
    assert conv["sigmoid/relu"]["ratio"]["median"] == pytest.approx(2.0)
    assert conv["sigmoid/relu"]["order"]["balanced"]
    # Two layers' forward+backward over the step: sigmoid (2 + 2) / 40, relu (1 + 1) / 20.
    assert summary["share_of_step"] == {"sigmoid": pytest.approx(0.1), "relu": pytest.approx(0.1)}
    assert summary["step_difference_seconds"]["median"] == pytest.approx(20.0)
    assert summary["step_difference_predicted_seconds"] == pytest.approx(2.0)
    lines = summary_lines(summary)
    assert "activations' share of a step: sigmoid 10.0%, relu 10.0%" in lines
    assert any(line.startswith("step time sigmoid - relu: mean 20000.00 ms") for line in lines)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--samples", "1"], "--samples 1: an interval needs at least 2 samples"),
        (["--loops", "-1"], "--loops -1: give 0 (calibrate) or a positive count"),
        (["--target-seconds", "0"], "--target-seconds 0.0: give a positive time"),
    ],
)
def test_refused_settings_stop_before_measuring(tmp_path, capsys, options, message):
    output = tmp_path / "cost.json"
    assert run_cli(main, ["--output", str(output), *options]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}")
    assert len(err.splitlines()) == 1
    assert not output.exists()


def test_an_output_that_cannot_be_written_stops_before_measuring(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert run_cli(main, ["--output", str(blocker / "cost.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {blocker / 'cost.json'}: ")
    assert err.rstrip().endswith("pass a writable path to --output")
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_the_timed_shapes_are_the_networks_own():
    from pipeline.model import TUTORIAL, build_cnn

    model = build_cnn("relu", TUTORIAL)
    assert tuple(model.get_layer("conv2d").output.shape[1:]) == SHAPES["conv"][1:]
    assert tuple(model.get_layer("dense").output.shape[1:]) == SHAPES["dense"][1:]
