"""Stage `preprocess`: archive → uint8 arrays for train, validation and test, plus class names.

Images stay uint8 (a quarter of float32's size); the model scales them to [0, 1] itself.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import mlflow
import numpy as np

from pipeline import cli, tracking
from pipeline.cifar import CIFAR10, read_cifar10
from pipeline.errors import PipelineError
from pipeline.files import atomic_path, write_json
from pipeline.params import DataParams, check_split, logged_params

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


def class_counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=CIFAR10.n_classes).tolist()


def main(argv: Sequence[str] | None = None) -> None:
    args, params = cli.parse_stage(cli.stage_parser(__doc__, "archive", "output"), argv)
    if not args.archive.is_file():
        raise PipelineError(f"{args.archive} not found; run `dvc repro download` first")
    with tracking.stage_run(
        "preprocess", params.mlflow.experiment, logged_params(params, ["data"])
    ):
        with open(args.archive, "rb") as handle:
            cifar = read_cifar10(handle)
        splits = split_dataset(cifar.train_images, cifar.train_labels, params.data)
        test = (cifar.test_images, cifar.test_labels)
        # val_size 0 reproduces the tutorial: it validated on the test set.
        if params.data.val_size == 0:
            splits["validation"] = test
        splits["test"] = test
        meta = {
            "class_names": list(cifar.class_names),
            "validation_source": "test" if params.data.val_size == 0 else "train",
            "sizes": {name: len(labels) for name, (_, labels) in splits.items()},
            "class_counts": {name: class_counts(labels) for name, (_, labels) in splits.items()},
        }
        write_splits(args.output, splits, meta)
        counts = {f"{name}_images": size for name, size in meta["sizes"].items()}
        steps = [
            ("the split sizes", lambda: mlflow.log_metrics(counts)),
            ("meta.json", lambda: mlflow.log_dict(meta, "meta.json")),
        ]
        tracking.record("preprocess", steps)
    sizes = ", ".join(f"{k} {v:,}" for k, v in meta["sizes"].items())
    print(f"wrote {args.output}: {sizes} (validation from {meta['validation_source']})")


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
