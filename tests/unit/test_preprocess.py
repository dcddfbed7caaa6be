import contextlib
import json

import numpy as np
import pytest
from project import write_params

from pipeline import outage, preprocess, tracking
from pipeline.cifar import read_cifar10
from pipeline.errors import PipelineError
from pipeline.params import DataParams, load_params
from pipeline.splits import keep_classes, load_split, split_dataset, stratified_split


def labels_of(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_split_is_stratified_and_exact():
    labels = labels_of([100] * 10)
    kept, held = stratified_split(labels, 250, seed=1)
    assert len(held) == 250 and len(kept) == 750
    assert np.bincount(labels[held]).tolist() == [25] * 10
    assert np.intersect1d(kept, held).size == 0


def test_uneven_classes_keep_their_shares_and_the_total():
    labels = labels_of([50, 30, 20])
    _, held = stratified_split(labels, 11, seed=0)
    assert len(held) == 11
    assert np.bincount(labels[held], minlength=3).tolist() == [6, 3, 2]


def test_split_is_deterministic_per_seed():
    labels = labels_of([40] * 10)
    a = stratified_split(labels, 50, seed=7)[1]
    b = stratified_split(labels, 50, seed=7)[1]
    c = stratified_split(labels, 50, seed=8)[1]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_zero_holdout_keeps_everything():
    labels = labels_of([3] * 10)
    kept, held = stratified_split(labels, 0, seed=0)
    assert len(held) == 0 and len(kept) == 30


def data(val_size=0, train_limit=0, seed=42):
    return DataParams(
        url="file:///x", sha256="0" * 64, val_size=val_size, train_limit=train_limit, seed=seed
    )


def test_split_dataset_applies_val_size_then_limit():
    labels = labels_of([40] * 10).astype(np.uint8)
    images = np.arange(len(labels))[:, None].astype(np.int64)
    splits = split_dataset(images, labels, data(val_size=100, train_limit=200))
    train_x, train_y = splits["train"]
    val_x, val_y = splits["validation"]
    assert len(train_y) == 200 and len(val_y) == 100
    assert np.bincount(train_y).tolist() == [20] * 10
    assert np.intersect1d(train_x, val_x).size == 0  # no image in both


def test_data_seed_draws_both_the_validation_split_and_the_subset():
    labels = labels_of([40] * 10).astype(np.uint8)
    images = np.arange(len(labels))
    drawn = {}
    for seed in (1, 2):
        splits = split_dataset(images, labels, data(val_size=100, train_limit=200, seed=seed))
        kept, held = stratified_split(labels, 100, seed)
        # The subset is drawn from what is kept, by the next seed (its own stream).
        _, subset = stratified_split(labels[kept], 200, seed + 1)
        assert splits["validation"][0].tolist() == held.tolist()
        assert splits["train"][0].tolist() == kept[subset].tolist()
        drawn[seed] = splits
    assert drawn[1]["validation"][0].tolist() != drawn[2]["validation"][0].tolist()
    assert drawn[1]["train"][0].tolist() != drawn[2]["train"][0].tolist()


@pytest.mark.parametrize(
    ("val_size", "limit", "key"), [(400, 0, "data.val_size"), (100, 301, "data.train_limit")]
)
def test_impossible_sizes_name_the_param(val_size, limit, key):
    labels = labels_of([40] * 10).astype(np.uint8)
    with pytest.raises(PipelineError, match=key.replace(".", r"\.")):
        split_dataset(labels[:, None], labels, data(val_size=val_size, train_limit=limit))


def test_keep_classes_relabels_in_the_order_given():
    names = ("airplane", "cat", "dog", "ship")
    labels = np.array([0, 1, 2, 3, 2, 1, 0])
    images = np.arange(len(labels))[:, None]
    kept_images, kept_labels = keep_classes(images, labels, names, ["dog", "cat"])
    assert kept_images.ravel().tolist() == [1, 2, 4, 5]
    assert kept_labels.tolist() == [1, 0, 0, 1]  # dog → 0, cat → 1
    assert kept_labels.dtype == labels.dtype
    same = keep_classes(images, labels, names, ())
    assert same[0] is images and same[1] is labels


def test_keep_classes_names_the_archives_classes_when_one_is_unknown():
    with pytest.raises(PipelineError, match=r"'horse', not a class of this archive \(cat, dog\)"):
        keep_classes(np.zeros((2, 1)), np.array([0, 1]), ("cat", "dog"), ["cat", "horse"])


@pytest.mark.parametrize("val_size", [50, 0])
def test_the_stage_writes_the_archives_splits(tiny_archive, tmp_path, monkeypatch, val_size):
    """preprocess's main, its MLflow run left out: validation is held out of the training
    images (or, with val_size 0, is the test set, as the tutorial had it), and test.npz is the
    archive's test batch."""
    monkeypatch.setattr(tracking, "stage_run", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(outage, "run_logging_steps", lambda *a, **k: [])
    params = write_params(tmp_path / "params.yaml", data__val_size=val_size, data__train_limit=100)
    out = tmp_path / "processed"
    preprocess.main(
        ["--params", str(params), "--archive", str(tiny_archive[0]), "--output", str(out)]
    )
    with open(tiny_archive[0], "rb") as handle:
        cifar = read_cifar10(handle)
    expected = split_dataset(cifar.train_images, cifar.train_labels, load_params(params).data)
    test = (cifar.test_images, cifar.test_labels)
    if val_size == 0:
        expected["validation"] = test
    for name, arrays in (*expected.items(), ("test", test)):
        written = load_split(out, name)
        for got, want in zip(written, arrays, strict=True):
            assert np.array_equal(got, want), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sizes"] == {"train": 100, "validation": val_size or 100, "test": 100}
    assert meta["validation_source"] == ("train" if val_size else "test")
