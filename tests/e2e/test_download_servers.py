"""Downloads against real servers on 127.0.0.1: certificates, redirects, stalls, cut-offs."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.download import DownloadError, download

PAYLOAD = b"cifar" * 2000
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()

pytestmark = pytest.mark.servers


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by itself, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Handler(http.server.BaseHTTPRequestHandler):
    behaviour = "ok"
    redirect_to = ""
    requests: list[str]  # the paths asked for, per server

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.behaviour == "stall_before_headers":
            time.sleep(3)
            return
        if self.behaviour == "redirect":
            self.send_response(302)
            self.send_header("Location", self.redirect_to)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.behaviour == "ok":
            self.wfile.write(PAYLOAD)
        elif self.behaviour == "cut":
            self.wfile.write(PAYLOAD[:1000])  # then the connection closes
        elif self.behaviour == "stall_mid_body":
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            time.sleep(3)


def serve(behaviour: str, tls: tuple[Path, Path] | None = None, redirect_to: str = ""):
    handler = type(
        "H", (Handler,), {"behaviour": behaviour, "redirect_to": redirect_to, "requests": []}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls else "http"
    return server, f"{scheme}://127.0.0.1:{server.server_address[1]}/cifar.tar.gz"


@pytest.fixture
def server() -> Iterator:
    started = []

    def start(*args, **kwargs):
        started.append(serve(*args, **kwargs))
        return started[-1][1]

    yield start
    for srv, _ in started:
        srv.shutdown()
        srv.server_close()


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def test_plain_http_download_works(server, tmp_path):
    url = server("ok")
    assert download(url, PAYLOAD_SHA, tmp_path / "a.tar.gz", timeout=5) == len(PAYLOAD)


def test_untrusted_certificate_is_refused(server, tmp_path):
    url = server("ok", tls=self_signed(tmp_path))
    with pytest.raises(DownloadError, match=r"certificate of .* could not be verified"):
        download(url, PAYLOAD_SHA, tmp_path / "out" / "a.tar.gz", timeout=5)
    assert not (tmp_path / "out" / "a.tar.gz").exists()


def test_trusted_certificate_downloads(server, tmp_path):
    cert, key = self_signed(tmp_path)
    url = server("ok", tls=(cert, key))
    output = tmp_path / "a.tar.gz"
    download(url, PAYLOAD_SHA, output, timeout=5, context=trusting(cert))
    assert output.read_bytes() == PAYLOAD


def test_https_never_falls_back_to_http(server, tmp_path):
    cert, key = self_signed(tmp_path)
    plain = server("ok")
    url = server("redirect", tls=(cert, key), redirect_to=plain)
    with pytest.raises(DownloadError, match="not https; refusing"):
        download(url, PAYLOAD_SHA, tmp_path / "a.tar.gz", timeout=5, context=trusting(cert))
    assert not (tmp_path / "a.tar.gz").exists()


def test_server_that_never_answers_times_out(tmp_path):
    # It stalls 3 s and then hangs up: only a timeout under 3 s ends the wait with this
    # error (one later would meet the closed connection), and it is the only request.
    stalling, url = serve("stall_before_headers")
    try:
        with pytest.raises(DownloadError, match="did not answer within 1 s; try again later"):
            download(url, PAYLOAD_SHA, tmp_path / "a.tar.gz", timeout=1)
        assert stalling.RequestHandlerClass.requests == ["/cifar.tar.gz"]
        assert list(tmp_path.iterdir()) == []
    finally:
        stalling.shutdown()
        stalling.server_close()


def test_stall_mid_download_leaves_nothing(server, tmp_path):
    url = server("stall_mid_body")
    with pytest.raises(DownloadError, match="stalled for 1 s mid-download"):
        download(url, PAYLOAD_SHA, tmp_path / "a.tar.gz", timeout=1)
    assert list(tmp_path.iterdir()) == []


def test_cut_connection_leaves_nothing_and_next_run_starts_clean(server, tmp_path):
    output = tmp_path / "a.tar.gz"
    with pytest.raises(DownloadError, match="nothing was kept"):
        download(server("cut"), PAYLOAD_SHA, output, timeout=5)
    assert list(tmp_path.iterdir()) == []
    download(server("ok"), PAYLOAD_SHA, output, timeout=5)
    assert output.read_bytes() == PAYLOAD
