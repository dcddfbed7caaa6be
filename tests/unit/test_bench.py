"""The benchmark's arithmetic: ratios from medians, and the 3-decimal comparison of histories."""

from __future__ import annotations

import pytest
from bench import max_metric_gap, summarize, throughput


def run(seconds, val_accuracy=(0.1, 0.2), peak=1000.0, diagnostics=0.0, images=600) -> dict:
    n = len(val_accuracy)
    return {
        "history": {
            "loss": [2.0] * n,
            "accuracy": [0.5] * n,
            "val_loss": [2.0] * n,
            "val_accuracy": list(val_accuracy),
        },
        "epoch_seconds": list(seconds),
        "diagnostics_seconds": diagnostics,
        "images_per_epoch": images,
        "peak_rss_mb": peak,
    }


def test_throughput_leaves_out_the_first_epoch():
    assert throughput(run([100.0, 2.0, 4.0])) == pytest.approx(600 / 3.0)


def test_summary_reports_ratios_and_identical_metrics():
    runs = {
        "tutorial": [
            run([9, 4, 4], peak=4000),
            run([9, 6, 6], peak=4000),
            run([9, 8, 8], peak=4100),
        ],
        "ours": [run([5, 2, 2], peak=1000), run([5, 3, 3], peak=1200), run([5, 4, 4], peak=1400)],
        "ours+diagnostics": [run([5, 2.2, 2.2], peak=1200, diagnostics=0.4)] * 3,
    }
    lines = summarize(runs)
    assert "throughput ratio ours/tutorial: 2.00x (medians), 2.00x (fastest epoch of each)" in lines
    assert "peak memory ratio ours/tutorial: 0.30" in lines  # median 1200 / median 4000
    share = 0.4 / (5 + 2.2 + 2.2 - 0.4)  # diagnostics over the rest of the epochs' time
    assert f"diagnostics' own time, share of the rest of training: {share:.1%}" in lines
    assert any(line.startswith("ours vs tutorial") and "the same to 3" in line for line in lines)


def test_summary_says_when_metrics_differ_at_the_third_decimal():
    tutorial, ours = run([1, 1], val_accuracy=(0.1, 0.2)), run([1, 1], val_accuracy=(0.1, 0.2011))
    assert max_metric_gap(ours, tutorial) == pytest.approx(0.0011)
    runs = {"tutorial": [tutorial], "ours": [ours], "ours+diagnostics": [tutorial]}
    lines = summarize(runs)
    assert any(line.startswith("ours vs tutorial") and "NOT the same" in line for line in lines)
