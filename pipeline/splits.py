"""The processed dataset: how the archive's images are split (validation held out, a training
subset) and how the splits are stored and read back. Every stage that reads data/processed
reads it through `load_split`; only preprocess writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.cifar import CIFAR10
from pipeline.errors import PipelineError
from pipeline.files import atomic_path, write_json
from pipeline.params import DataParams, check_split

SPLITS = ("train", "validation", "test")


def stratified_split(
    labels: np.ndarray, n_holdout: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of `labels` into (kept, held out) with `n_holdout` held out per class share.

    Each class gives its proportional share (largest remainder, so the total is exact); which
    images are drawn depends only on `seed`. Both index arrays come back sorted.
    """
    if not 0 <= n_holdout <= len(labels):
        raise ValueError(f"n_holdout must be between 0 and {len(labels)}, got {n_holdout}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n_holdout * counts / len(labels)
    quota = np.floor(exact).astype(int)
    # Hand the rounding remainder to the classes with the largest fractional parts.
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[: n_holdout - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    held = [
        rng.permutation(np.flatnonzero(labels == c))[:q]
        for c, q in zip(classes, quota, strict=True)
    ]
    held_out = np.sort(np.concatenate(held)) if held else np.array([], dtype=int)
    kept = np.setdiff1d(np.arange(len(labels)), held_out, assume_unique=True)
    return kept, held_out


def keep_classes(
    images: np.ndarray, labels: np.ndarray, names: Sequence[str], classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Only the images of `classes` (names from `names`, the archive's), relabelled 0, 1, … in
    the order `classes` gives; all of them, unchanged, when `classes` is empty."""
    if not classes:
        return images, labels
    unknown = [name for name in classes if name not in names]
    if unknown:
        raise PipelineError(
            f"param 'data.classes' names {', '.join(map(repr, unknown))}, not a class of this "
            f"archive ({', '.join(names)}); use those names"
        )
    relabel = np.full(len(names), -1)
    relabel[[list(names).index(name) for name in classes]] = np.arange(len(classes))
    kept = np.flatnonzero(relabel[labels] >= 0)
    return images[kept], relabel[labels[kept]].astype(labels.dtype)


def split_dataset(
    images: np.ndarray, labels: np.ndarray, data: DataParams
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Hold out `val_size` for validation, then keep a `train_limit` subset of the rest."""
    try:
        check_split(data, len(labels))  # against the archive read, which may be a small one
    except ValueError as exc:
        raise PipelineError(str(exc)) from None
    train_idx, val_idx = stratified_split(labels, data.val_size, data.seed)
    if data.train_limit:
        # Relative to train_idx; a different stream from the validation split's.
        _, subset = stratified_split(labels[train_idx], data.train_limit, data.seed + 1)
        train_idx = train_idx[subset]
    return {
        "train": (images[train_idx], labels[train_idx]),
        "validation": (images[val_idx], labels[val_idx]),
    }


def write_splits(
    output: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict
) -> None:
    """Write each split as an uncompressed .npz (fast to load) and meta.json, atomically."""
    with atomic_path(output) as tmp:
        tmp.mkdir()
        for name, (images, labels) in splits.items():
            np.savez(tmp / f"{name}.npz", images=images, labels=labels)
        write_json(tmp / "meta.json", meta)


def load_split(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one split written by this stage."""
    path = Path(directory) / f"{name}.npz"
    try:
        with np.load(path) as arrays:
            return arrays["images"], arrays["labels"]
    except FileNotFoundError:
        raise PipelineError(f"{path} not found; run `dvc repro preprocess` first") from None


def class_counts(labels: np.ndarray, n_classes: int = CIFAR10.n_classes) -> list[int]:
    return np.bincount(labels, minlength=n_classes).tolist()
