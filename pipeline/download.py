"""Stage `download`: fetch `data.url` to data/raw/, verified against `data.sha256`.

The archive is streamed to a temporary name beside the output and renamed only once its
checksum matches, so no partial or wrong archive ever sits at the output path.
"""

from __future__ import annotations

import hashlib
import http.client
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tqdm import tqdm

from pipeline import cli, outage, store, tracking
from pipeline.errors import PipelineError
from pipeline.files import atomic_path
from pipeline.params import STAGE_PARAMS, logged_params

CHUNK = 1 << 20
TIMEOUT_S = 60


class DownloadError(PipelineError):
    """The archive could not be fetched or is not the expected file."""


class _NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to anything else."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if req.full_url.startswith("https://") and not newurl.startswith("https://"):
            raise DownloadError(
                f"{req.full_url} redirects to {newurl}, which is not https; refusing to "
                "download over an insecure connection, fix data.url"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    # The default context verifies certificates and host names against the system's CA store.
    context = context or ssl.create_default_context()
    return urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context), _NoDowngradeRedirects()
    )


def open_url(
    url: str, timeout: float = TIMEOUT_S, context: ssl.SSLContext | None = None
) -> IO[bytes]:
    """Open `url` for reading, with verified certificates and a timeout on every read.

    `context` replaces the system's CA store (tests use it to trust their own server).
    """
    try:
        return _opener(context).open(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise DownloadError(
            f"{url} answered HTTP {exc.code} {exc.reason}; check data.url"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _open_error(url, timeout, exc) from None


def _open_error(url: str, timeout: float, exc: Exception) -> DownloadError:
    """The one-line error for `url` failing to open; URLError carries the cause as `reason`."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return DownloadError(
            f"the certificate of {url} could not be verified ({reason.verify_message}); "
            "refusing to download, check data.url or the system's CA certificates"
        )
    if isinstance(reason, TimeoutError):
        return DownloadError(f"{url} did not answer within {timeout:.0f} s; try again later")
    if isinstance(exc, urllib.error.URLError):
        return DownloadError(
            f"cannot reach {url} ({reason}); check data.url, or point it at a local copy "
            "with file:///absolute/path/cifar-10-python.tar.gz"
        )
    return DownloadError(f"opening {url} failed ({exc}); try again")


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


def download(
    url: str,
    sha256: str,
    output: Path,
    timeout: float = TIMEOUT_S,
    context: ssl.SSLContext | None = None,
) -> int:
    """Fetch `url` to `output` if its sha256 matches; return its size in bytes."""
    with atomic_path(output) as tmp:
        source = open_url(url, timeout, context)
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
        except (OSError, http.client.HTTPException) as exc:
            # e.g. the connection closed before Content-Length bytes arrived
            raise DownloadError(
                f"reading {url} failed ({type(exc).__name__}: {exc}); nothing was kept, try again"
            ) from None
        size = tmp.stat().st_size
        if length and size != int(length):
            raise DownloadError(
                f"the connection to {url} closed after {size:,} of {int(length):,} bytes; "
                "nothing was kept, try again"
            )
        if actual != sha256:
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; "
                "the file is not the expected archive, fix data.url or data.sha256"
            )
    return size


def source_url(url: str, root: Path) -> str:
    """`data.url` as a URL: a plain path (relative ones from the repository root) → file://.

    A relative path keeps params.yaml and dvc.lock free of this machine's folders, so a clone
    laid out the same way elsewhere reproduces the run.
    """
    if "://" in url:
        return url
    return (root / Path(url).expanduser()).resolve().as_uri()


def main(argv: Sequence[str] | None = None) -> None:
    args, params = cli.parse_stage(cli.stage_parser(__doc__, "output"), argv)
    logged = logged_params(params, STAGE_PARAMS["download"])
    with tracking.stage_run("download", params.mlflow.experiment, logged):
        url = source_url(params.data.url, store.repo_root())
        size = download(url, params.data.sha256, args.output)
        outage.run_logging_steps(
            "download", [("its size", lambda: tracking.log_metric("archive_bytes", size))]
        )
    print(f"downloaded {size:,} bytes to {args.output}, sha256 verified")


if __name__ == "__main__":
    sys.exit(cli.run_cli(main))
