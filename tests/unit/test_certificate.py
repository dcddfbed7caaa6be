"""The class server's self-signed certificate: what it names, and that a client holding it (and
only it) completes a TLS handshake with the key, checked in memory."""

from __future__ import annotations

import ssl
import stat

import pytest
from cryptography import x509

from pipeline.certificate import CERT_FILE, KEY_FILE, self_signed, write_certificate
from pipeline.errors import PipelineError


def handshake(cert_dir, server_cert, client_cafile, host: str) -> None:
    """A TLS handshake between two in-memory ends: the server presenting `server_cert` (and
    its key), the client trusting `client_cafile` and expecting `host`."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_dir / server_cert, cert_dir / KEY_FILE)
    client = ssl.create_default_context(cafile=str(client_cafile))
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    ends = [
        client.wrap_bio(pipes[0], pipes[1], server_hostname=host),
        server.wrap_bio(pipes[2], pipes[3], server_side=True),
    ]
    done = [False, False]
    for _ in range(20):
        for i, end in enumerate(ends):
            try:
                end.do_handshake()
                done[i] = True
            except ssl.SSLWantReadError:
                pass
        pipes[2].write(pipes[1].read())  # client → server
        pipes[0].write(pipes[3].read())  # server → client
        if all(done):
            return
    raise AssertionError("the handshake did not finish")


def test_names_each_host_as_an_address_or_a_name():
    cert, _ = self_signed(["192.0.2.7", "teacher-host"])
    parsed = x509.load_pem_x509_certificate(cert)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    assert names.get_values_for_type(x509.DNSName) == ["teacher-host"]
    assert parsed.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert parsed.issuer == parsed.subject


def test_a_client_given_the_certificate_completes_the_handshake(tmp_path):
    write_certificate(tmp_path, ["127.0.0.1", "teacher-host"])
    for host in ("127.0.0.1", "teacher-host"):
        handshake(tmp_path, CERT_FILE, tmp_path / CERT_FILE, host)


def test_a_client_given_another_certificate_or_host_is_refused(tmp_path):
    write_certificate(tmp_path, ["teacher-host"])
    other = tmp_path / "other"
    write_certificate(other, ["teacher-host"])
    with pytest.raises(ssl.SSLCertVerificationError) as wrong_cert:
        handshake(tmp_path, CERT_FILE, other / CERT_FILE, "teacher-host")
    with pytest.raises(ssl.SSLCertVerificationError) as wrong_host:
        handshake(tmp_path, CERT_FILE, tmp_path / CERT_FILE, "other-host")
    assert wrong_cert.value.verify_code != wrong_host.value.verify_code


def test_the_key_is_its_owners_alone_and_an_existing_pair_is_kept(tmp_path):
    write_certificate(tmp_path, ["teacher-host"])
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    before = (tmp_path / CERT_FILE).read_bytes()
    with pytest.raises(PipelineError, match="already exists"):
        write_certificate(tmp_path, ["teacher-host"])
    assert (tmp_path / CERT_FILE).read_bytes() == before


@pytest.mark.parametrize("host", ["http://teacher-host", "teacher-host:8080", "a b", ""])
def test_a_host_with_scheme_port_or_spaces_is_refused(tmp_path, host):
    with pytest.raises(PipelineError, match="neither a host name nor an IP address"):
        write_certificate(tmp_path, [host])
    assert not list(tmp_path.iterdir())
