"""The activation-cost tool end to end with the fewest samples and loops: every probe timed on
the network's own shapes, every sample kept, and the summary built from them."""

from __future__ import annotations

import json
import statistics

import pytest
from activation_cost import ACTIVATIONS, PROBES, UNROLL, main


@pytest.mark.slow
def test_a_tiny_measurement_writes_every_sample_and_the_summary(tmp_path, capsys):
    output = tmp_path / "claims" / "activation-cost.json"
    main(["--output", str(output), "--samples", "3", "--loops", "1"])
    result = json.loads(output.read_text())

    assert result["machine"]["cpu"]
    assert result["machine"]["tensorflow"]
    assert set(result["machine"]["threads"]) >= {"intra_op", "inter_op"}
    assert result["settings"]["samples"] == 3
    raw = result["raw"]
    assert raw["first"] == ["sigmoid", "relu", "sigmoid"]
    assert list(raw["probes"]) == list(PROBES)
    assert raw["probes"]["conv_forward"]["shape"] == [64, 30, 30, 32]
    assert raw["probes"]["dense_forward_backward"]["shape"] == [64, 128]
    assert raw["probes"]["train_step"]["shape"] == [64, 32, 32, 3]
    assert raw["probes"]["dense_forward"]["calls_per_sample"] == UNROLL
    assert raw["probes"]["train_step"]["calls_per_sample"] == 1
    for probe in raw["probes"].values():
        for activation in ACTIVATIONS:
            assert len(probe["seconds"][activation]) == 3
            assert all(s > 0 for s in probe["seconds"][activation])

    summary = result["summary"]
    for name, probe in raw["probes"].items():
        paired = summary["probes"][name]["sigmoid/relu"]
        seconds = probe["seconds"]
        ratios = [s / r for s, r in zip(seconds["sigmoid"], seconds["relu"], strict=True)]
        assert paired["ratio"]["per_sample"] == pytest.approx(ratios)
        assert paired["order"]["balanced"]

    def per_call(name: str, activation: str) -> float:
        probe = raw["probes"][name]
        return statistics.median(probe["seconds"][activation]) / probe["calls_per_sample"]

    for activation in ACTIVATIONS:
        own = per_call("conv_forward_backward", activation)
        own += per_call("dense_forward_backward", activation)
        share = own / per_call("train_step", activation)
        assert summary["share_of_step"][activation] == pytest.approx(share)
    assert {"mean", "ci_low", "ci_high"} <= set(summary["step_difference_seconds"])
    out = capsys.readouterr().out
    assert f"wrote {output}" in out
    assert "activations' share of a step: sigmoid " in out
