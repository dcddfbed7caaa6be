import hashlib

import pytest

from pipeline.download import DownloadError, download, source_url


def test_file_url_is_copied_and_verified(tiny_archive, tmp_path):
    path, sha = tiny_archive
    output = tmp_path / "raw" / "cifar-10-python.tar.gz"
    size = download(path.as_uri(), sha, output)
    assert size == path.stat().st_size
    assert hashlib.sha256(output.read_bytes()).hexdigest() == sha


def test_checksum_mismatch_leaves_earlier_output_untouched(tiny_archive, tmp_path):
    path, _ = tiny_archive
    output = tmp_path / "cifar-10-python.tar.gz"
    output.write_bytes(b"earlier good output")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(path.as_uri(), "0" * 64, output)
    assert output.read_bytes() == b"earlier good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-python.tar.gz"]


def test_missing_file_names_the_url(tmp_path):
    output = tmp_path / "out.tar.gz"
    url = (tmp_path / "nowhere.tar.gz").as_uri()
    with pytest.raises(DownloadError, match=r"cannot reach .*nowhere"):
        download(url, "0" * 64, output)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_is_a_clear_error(tmp_path):
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(DownloadError, match="cannot reach"):
        download("http://127.0.0.1:9/cifar.tar.gz", "0" * 64, tmp_path / "out.tar.gz", timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_a_relative_path_is_read_from_the_repository_root(tmp_path):
    assert (
        source_url("../data/x.tar.gz", tmp_path / "repo") == (tmp_path / "data/x.tar.gz").as_uri()
    )
    assert source_url("/srv/x.tar.gz", tmp_path) == "file:///srv/x.tar.gz"
    assert source_url("https://example.org/x.tar.gz", tmp_path) == "https://example.org/x.tar.gz"
