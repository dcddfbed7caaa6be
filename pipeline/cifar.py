"""Reading CIFAR-10's python-batch archive safely, from a file object, without extracting it.

The batches are pickles, and a pickle can run code. The unpickler here builds only the few
numpy objects an image array needs, and every member, shape and label is checked.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any

import numpy as np

from pipeline.errors import PipelineError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"


@dataclass(frozen=True)
class Dataset:
    """What every stage needs to know about the dataset, said once."""

    name: str  # as MLflow names its splits and the registered models: "cifar10-train", …
    title: str  # as people write it
    image_shape: tuple[int, int, int]  # height, width, channels (uint8, channels last)
    n_classes: int
    train_images: int  # in the real archive (the tiny test archives have fewer)
    test_images: int

    @property
    def chance(self) -> float:
        """Accuracy of guessing: 1 / classes."""
        return 1 / self.n_classes


CIFAR10 = Dataset("cifar10", "CIFAR-10", (32, 32, 3), 10, 50_000, 10_000)
N_CLASSES = CIFAR10.n_classes
IMAGE_SHAPE = CIFAR10.image_shape
ROW_LENGTH = int(np.prod(IMAGE_SHAPE))
# A real batch is 31 MB; anything far larger is not a CIFAR batch and is not read into memory.
MAX_MEMBER_BYTES = 64 << 20

# (module, name) pairs a batch pickle may build: an ndarray, its dtype, and (in protocol-2
# pickles written by Python 3) the bytes of its buffer. Nothing here can run other code.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class ArchiveError(PipelineError):
    """The archive is not a valid CIFAR-10 python-batch archive."""


@dataclass(frozen=True)
class Cifar10:
    train_images: np.ndarray  # (N, 32, 32, 3) uint8, channels last
    train_labels: np.ndarray  # (N,) uint8 in 0..9
    test_images: np.ndarray  # (M, 32, 32, 3) uint8
    test_labels: np.ndarray  # (M,) uint8
    class_names: tuple[str, ...]  # the 10 names from batches.meta, in label order


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise ArchiveError(
            f"a batch pickle tries to build {module}.{name}, which a CIFAR-10 batch never needs; "
            "the archive is not genuine CIFAR-10, use the official one"
        )


def unpickle(payload: bytes, member: str) -> dict[str, Any]:
    """Load one batch pickle with the restricted unpickler; keys come back as str."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(payload), encoding="bytes").load()
    except ArchiveError:
        raise
    except Exception as exc:
        raise ArchiveError(
            f"{member} is not a readable pickle ({exc}); the archive is corrupt"
        ) from None
    if not isinstance(obj, dict):
        raise ArchiveError(
            f"{member} holds a {type(obj).__name__}, not a dict; the archive is corrupt"
        )
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def decode_batch(batch: dict[str, Any], member: str) -> tuple[np.ndarray, np.ndarray]:
    """Check a batch dict and return its images (N, 32, 32, 3) and labels (N,), both uint8."""
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ArchiveError(
            f"{member}: 'data' must be an N×{ROW_LENGTH} uint8 array; the archive is corrupt"
        )
    if data.shape[1] != ROW_LENGTH:
        raise ArchiveError(
            f"{member}: 'data' rows have {data.shape[1]} values, expected {ROW_LENGTH}; "
            "the archive is not CIFAR-10's python version"
        )
    if not isinstance(labels, list | np.ndarray) or len(labels) != data.shape[0]:
        raise ArchiveError(
            f"{member}: 'labels' must list one label per image; the archive is corrupt"
        )
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise ArchiveError(f"{member}: 'labels' are not integers; the archive is corrupt") from None
    if label_array.ndim != 1 or (
        label_array.size and (label_array.min() < 0 or label_array.max() >= N_CLASSES)
    ):
        raise ArchiveError(f"{member}: labels must be integers 0–9; the archive is corrupt")
    # Rows are channel-major (1024 red, 1024 green, 1024 blue); models want channels last.
    height, width, channels = IMAGE_SHAPE
    images = data.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), label_array.astype(np.uint8)


def decode_meta(meta: dict[str, Any]) -> tuple[str, ...]:
    """Return the 10 class names from batches.meta."""
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != N_CLASSES:
        raise ArchiveError(
            f"{META}: 'label_names' must list {N_CLASSES} names; the archive is corrupt"
        )
    decoded = tuple(n.decode() if isinstance(n, bytes) else n for n in names)
    if not all(isinstance(n, str) and n for n in decoded):
        raise ArchiveError(f"{META}: class names must be non-empty strings; the archive is corrupt")
    return decoded


def _member_key(member: tarfile.TarInfo) -> str | None:
    """The batch name a member holds, None for members we skip; raise on unsafe members."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise ArchiveError(
            f"member {member.name!r} points outside the archive; refusing an unsafe archive"
        )
    if member.issym() or member.islnk():
        raise ArchiveError(
            f"member {member.name!r} is a link; a CIFAR-10 archive has none, refusing it"
        )
    if member.isdir():
        return None
    if not member.isfile():
        raise ArchiveError(
            f"member {member.name!r} is not a regular file; refusing an unsafe archive"
        )
    if len(path.parts) == 2 and path.parts[0] == FOLDER:
        name = path.parts[1]
        if name in (*TRAIN_BATCHES, TEST_BATCH, META):
            return name
    return None


def read_members(fileobj: IO[bytes]) -> dict[str, bytes]:
    """Stream a .tar.gz and return the raw bytes of each CIFAR-10 batch it holds."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as archive:
            for member in archive:
                key = _member_key(member)
                if key is None:
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    raise ArchiveError(
                        f"member {member.name!r} is {member.size} bytes, too large for a CIFAR-10 batch"
                    )
                if key in found:
                    raise ArchiveError(
                        f"member {member.name!r} appears twice; the archive is corrupt"
                    )
                handle = archive.extractfile(member)
                found[key] = handle.read() if handle else b""
    # tarfile's stream reader lets some malformed gzip headers escape as TypeError/ValueError.
    except (tarfile.TarError, EOFError, zlib.error, OSError, TypeError, ValueError) as exc:
        raise ArchiveError(
            f"the archive is corrupt or truncated ({exc or type(exc).__name__}); "
            "delete it and download it again"
        ) from None
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH, META) if n not in found]
    if missing:
        raise ArchiveError(
            f"the archive lacks {FOLDER}/{missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
            + "; it is not the CIFAR-10 python version"
        )
    return found


def read_cifar10(fileobj: IO[bytes]) -> Cifar10:
    """Read and validate the whole archive from an open binary file."""
    raw = read_members(fileobj)
    train = [decode_batch(unpickle(raw[name], name), name) for name in TRAIN_BATCHES]
    test_images, test_labels = decode_batch(unpickle(raw[TEST_BATCH], TEST_BATCH), TEST_BATCH)
    return Cifar10(
        train_images=np.concatenate([images for images, _ in train]),
        train_labels=np.concatenate([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        class_names=decode_meta(unpickle(raw[META], META)),
    )
