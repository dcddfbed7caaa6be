"""A tiny archive in CIFAR-10's exact layout, with classes a small network can tell apart."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CLASS_NAMES = [f"class{i}" for i in range(10)]


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows in CIFAR's channel-major layout; each class has its own colour and a bright band."""
    n = len(labels)
    images = rng.integers(0, 60, size=(n, 3, 32, 32), dtype=np.int64)
    for i, label in enumerate(labels):
        colour = np.array([(label * 37) % 256, (label * 91) % 256, (label * 151) % 256])
        images[i] += (colour[:, None, None] // 2).astype(np.int64)
        images[i, :, label * 3 : label * 3 + 3, :] = 255
    return np.clip(images, 0, 255).astype(np.uint8).reshape(n, 3072)


def batch_bytes(labels: np.ndarray, rng: np.random.Generator, name: str) -> bytes:
    batch = {
        b"batch_label": name.encode(),
        b"labels": [int(x) for x in labels],
        b"data": make_images(labels, rng),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=2)


def add_member(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def batches(per_class_train: int, per_class_test: int, seed: int) -> dict[str, bytes]:
    """The raw members of a tiny archive: five training batches, a test batch and the meta."""
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.repeat(np.arange(10), per_class_train))
    members = {}
    for i, part in enumerate(np.array_split(train_labels, 5), start=1):
        members[f"data_batch_{i}"] = batch_bytes(part, rng, f"training batch {i} of 5")
    test_labels = rng.permutation(np.repeat(np.arange(10), per_class_test))
    members["test_batch"] = batch_bytes(test_labels, rng, "testing batch 1 of 1")
    meta = {b"label_names": [n.encode() for n in CLASS_NAMES], b"num_cases_per_batch": 0}
    members["batches.meta"] = pickle.dumps(meta, protocol=2)
    return members


def write_archive(
    path: Path, members: dict[str, bytes], folder: str = "cifar-10-batches-py"
) -> str:
    """Write members under `folder/` as a .tar.gz; return its sha256."""
    with tarfile.open(path, "w:gz") as archive:
        dir_info = tarfile.TarInfo(folder)
        dir_info.type = tarfile.DIRTYPE
        archive.addfile(dir_info)
        for name, payload in members.items():
            add_member(archive, f"{folder}/{name}", payload)
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_tiny_cifar(
    path: Path, per_class_train: int = 40, per_class_test: int = 10, seed: int = 0
) -> str:
    """Write a complete tiny archive; return its sha256."""
    return write_archive(path, batches(per_class_train, per_class_test, seed))
