"""A self-signed certificate for a class's tracking server, so that it can speak HTTPS on the
room's network without a certificate authority: the students' clients trust this one
certificate (MLFLOW_TRACKING_SERVER_CERT_PATH) and nothing else signed for the server.

    python -m pipeline.classroom certificate --host teacher-host
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PipelineError

CERT_FILE, KEY_FILE = "class-cert.pem", "class-key.pem"
VALID_DAYS = 365  # a school year; a new certificate means handing it out again
HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def subject_names(hosts: Sequence[str]) -> list:
    """Each host as a subjectAltName entry: clients match an address against IP entries and a
    name against DNS entries, never against the common name."""
    from cryptography import x509

    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if HOST_NAME.fullmatch(host) is None:
                raise PipelineError(
                    f"--host {host!r} is neither a host name nor an IP address; give the name or "
                    "address students will type, without scheme or port (as CLASS_HOST)"
                ) from None
            names.append(x509.DNSName(host))
    return names


def self_signed(hosts: Sequence[str], days: int = VALID_DAYS) -> tuple[bytes, bytes]:
    """(certificate, private key), both PEM, for a server reached as any of `hosts`. The
    certificate is its own issuer and not a CA: a client that trusts it trusts this server and
    nothing it might sign."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise ValueError("a certificate needs at least one host")
    alt_names = x509.SubjectAlternativeName(subject_names(hosts))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks in a room disagree
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(alt_names, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # the server reads it unattended
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_certificate(folder: Path, hosts: Sequence[str], days: int = VALID_DAYS) -> Path:
    """class-cert.pem and class-key.pem (readable by its owner only) in `folder`; returns the
    certificate's path. An existing pair is kept: students may already hold that certificate."""
    if days < 1:
        raise PipelineError(f"--days {days}: a certificate must be valid for at least one day")
    cert, key = self_signed(hosts, days)  # refuses a host that is neither name nor address
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    for path in (cert_path, key_path):
        if path.exists():
            raise PipelineError(
                f"{path} already exists and students may hold its certificate; keep using it, "
                "or move both class-*.pem files aside to make a new pair"
            )
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key)
    cert_path.write_bytes(cert)
    return cert_path
