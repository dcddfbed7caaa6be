"""Stage `download`: fetch `data.url` to data/raw/, verified against `data.sha256`.

The archive is streamed to a temporary name beside the output and renamed only once its
checksum matches, so no partial or wrong archive ever sits at the output path.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import mlflow
from tqdm import tqdm

from pipeline import tracking
from pipeline.errors import PipelineError, run_cli
from pipeline.files import atomic_path
from pipeline.params import flatten, load_params

OUTPUT = Path("data/raw/cifar-10-python.tar.gz")
CHUNK = 1 << 20
TIMEOUT_S = 60


class DownloadError(PipelineError):
    """The archive could not be fetched or is not the expected file."""


def open_url(url: str, timeout: float = TIMEOUT_S) -> IO[bytes]:
    """Open `url` for reading; https certificates are verified by urllib's default context."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"{url} answered HTTP {exc.code} {exc.reason}; check data.url"
        ) from None
    except urllib.error.URLError as exc:
        raise DownloadError(
            f"cannot reach {url} ({exc.reason}); check data.url, or point it at a local copy "
            "with file:///absolute/path/cifar-10-python.tar.gz"
        ) from None
    except TimeoutError:
        raise DownloadError(
            f"{url} did not answer within {timeout:.0f} s; try again later"
        ) from None


def copy_with_hash(source: IO[bytes], target: IO[bytes], total: int | None, label: str) -> str:
    """Copy `source` to `target` in chunks with a progress bar; return the sha256 of what passed."""
    digest = hashlib.sha256()
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=label,
        file=sys.stderr,
        mininterval=1.0 if sys.stderr.isatty() else 10.0,
    ) as bar:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            target.write(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def download(url: str, sha256: str, output: Path, timeout: float = TIMEOUT_S) -> int:
    """Fetch `url` to `output` if its sha256 matches; return its size in bytes."""
    with atomic_path(output) as tmp:
        source = open_url(url, timeout)
        length = source.headers.get("Content-Length") if hasattr(source, "headers") else None
        try:
            with source, open(tmp, "wb") as target:
                actual = copy_with_hash(
                    source, target, int(length) if length else None, output.name
                )
        except TimeoutError:
            raise DownloadError(
                f"{url} stalled for {timeout:.0f} s mid-download; try again"
            ) from None
        except OSError as exc:
            raise DownloadError(f"reading {url} failed ({exc}); try again") from None
        if actual != sha256:
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; "
                "the file is not the expected archive, fix data.url or data.sha256"
            )
        size = tmp.stat().st_size
    return size


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    logged = {
        k: v for k, v in flatten("data", params.data).items() if k in ("data.url", "data.sha256")
    }
    with tracking.stage_run("download", params.mlflow.experiment, logged):
        size = download(params.data.url, params.data.sha256, args.output)
        mlflow.log_metric("archive_bytes", size)
    print(f"downloaded {size:,} bytes to {args.output}, sha256 verified")


if __name__ == "__main__":
    sys.exit(run_cli(main))
