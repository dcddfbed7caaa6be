"""A smoke test on a subset of the real CIFAR-10 mirror; skipped when the mirror is absent."""

from __future__ import annotations

import pandas as pd
import pytest
from project import REAL_ARCHIVE, REAL_SHA256, write_params

from pipeline import download, preprocess, splits, train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.realdata,
    pytest.mark.skipif(
        not REAL_ARCHIVE.is_file(),
        reason=f"CIFAR-10 mirror not found at {REAL_ARCHIVE} (set CIFAR10_ARCHIVE)",
    ),
]


def test_real_subset_downloads_preprocesses_and_relu_learns(tmp_path):
    params_path = write_params(
        tmp_path / "params.yaml",
        data__url=REAL_ARCHIVE.resolve().as_uri(),
        data__sha256=REAL_SHA256,
        data__val_size=1000,
        data__train_limit=5000,
        train__epochs=1,
    )
    archive = tmp_path / "raw.tar.gz"
    download.main(["--params", str(params_path), "--output", str(archive)])
    preprocess.main(
        [
            "--params",
            str(params_path),
            "--archive",
            str(archive),
            "--output",
            str(tmp_path / "processed"),
        ]
    )
    images, labels = splits.load_split(tmp_path / "processed", "test")
    assert images.shape == (10_000, 32, 32, 3)
    assert sorted(pd.Series(labels).value_counts().tolist()) == [1000] * 10
    train.main(
        [
            "--activation",
            "relu",
            "--params",
            str(params_path),
            "--data",
            str(tmp_path / "processed"),
            "--models",
            str(tmp_path / "models"),
            "--results",
            str(tmp_path / "results"),
        ]
    )
    history = pd.read_csv(tmp_path / "results/relu/seed42/history.csv")
    # Chance is 0.10; one epoch on 5,000 real images should clearly beat it.
    assert history["val_accuracy"].iloc[-1] > 0.25
