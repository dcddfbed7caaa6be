import io
import pickle
import tarfile

import numpy as np
import pytest
from tiny_cifar import batches, write_archive

from pipeline.cifar import ArchiveError, decode_batch, read_cifar10, unpickle


def read(path):
    with open(path, "rb") as handle:
        return read_cifar10(handle)


def test_reads_tiny_archive(tiny_archive):
    cifar = read(tiny_archive[0])
    assert cifar.train_images.shape == (400, 32, 32, 3)
    assert cifar.train_images.dtype == np.uint8
    assert cifar.test_images.shape == (100, 32, 32, 3)
    assert np.bincount(cifar.train_labels).tolist() == [40] * 10
    assert cifar.class_names[3] == "class3"


def test_rows_become_channels_last():
    # One image whose red plane is 1, green 2, blue 3 (CIFAR rows are channel-major).
    row = np.repeat(np.array([1, 2, 3], dtype=np.uint8), 1024)[None, :]
    images, labels = decode_batch({"data": row, "labels": [7]}, "x")
    assert images[0, 5, 9].tolist() == [1, 2, 3]
    assert labels.tolist() == [7]


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ({"data": np.zeros((2, 3071), np.uint8), "labels": [0, 1]}, "3072"),
        ({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}, "uint8"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, "0–9"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, -1]}, "0–9"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "one label per image"),
        ({"labels": [0]}, "'data'"),
    ],
)
def test_bad_batches_are_rejected(batch, message):
    with pytest.raises(ArchiveError, match=message):
        decode_batch(batch, "data_batch_1")


class Boom:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_naming_other_objects_is_refused(capsys):
    payload = pickle.dumps({b"data": Boom(), b"labels": []})
    with pytest.raises(ArchiveError, match=r"builtins\.print"):
        unpickle(payload, "data_batch_1")
    assert "must never run" not in capsys.readouterr().out


def test_hostile_batch_inside_archive_is_refused(tmp_path):
    members = batches(2, 1, seed=0)
    members["data_batch_3"] = pickle.dumps({b"data": Boom(), b"labels": []})
    path = tmp_path / "evil.tar.gz"
    write_archive(path, members)
    with pytest.raises(ArchiveError, match="tries to build"):
        read(path)


def test_missing_batch_is_named(tmp_path):
    members = batches(2, 1, seed=0)
    del members["batches.meta"]
    path = tmp_path / "nometa.tar.gz"
    write_archive(path, members)
    with pytest.raises(ArchiveError, match=r"lacks cifar-10-batches-py/batches\.meta"):
        read(path)


def test_truncated_archive_is_corrupt(tiny_archive, tmp_path):
    data = tiny_archive[0].read_bytes()
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        read(path)


def test_not_gzip_is_corrupt(tmp_path):
    path = tmp_path / "junk.tar.gz"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(ArchiveError, match="corrupt or truncated"):
        read(path)


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "cifar-10-batches-py/../../x"])
def test_members_pointing_outside_are_refused(tmp_path, name):
    path = tmp_path / "unsafe.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveError, match="outside"):
        read(path)


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_links_are_refused(tmp_path, kind):
    path = tmp_path / "link.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type = kind
        info.linkname = "/etc/passwd"
        archive.addfile(info)
    with pytest.raises(ArchiveError, match="is a link"):
        read(path)
