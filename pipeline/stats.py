"""Summaries over seeds: mean, spread and Student-t confidence intervals. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The t quantile alone: scipy.stats costs a stage over a second of import, scipy.special little.
from scipy.special import stdtrit


def summarize_values(values: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean, sample std and the t-interval of the mean; std and interval are None for one value."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = float(data.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = float(data.std(ddof=1))
    half = float(stdtrit(n - 1, (1 + confidence) / 2) * std / np.sqrt(n))
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Summary of a[i] - b[i] over pairs (here: the same seed, so the same initial draw)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    return summarize_values(np.asarray(a, float) - np.asarray(b, float), confidence)
