"""The node's self-signed TLS certificate, made at first start and kept in the data directory."""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

CERT_NAME = "node.crt"
KEY_NAME = "node.key"


def ensure_certificate(tls_dir: Path, hostname: str) -> tuple[Path, Path]:
    """(cert_path, key_path) of the node's certificate, creating a self-signed one if absent."""
    tls_dir = Path(tls_dir)
    cert_path, key_path = tls_dir / CERT_NAME, tls_dir / KEY_NAME
    if cert_path.is_file() and key_path.is_file():  # the cert is written last: both is whole
        return cert_path, key_path
    tls_dir.mkdir(parents=True, exist_ok=True)
    # Every SMTP receiver and the API process get here at a first start: one makes the pair
    # under the lock, the others find it made (two makers would pair one's key with another's
    # certificate, and receivers would present different certificates).
    with open(tls_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.is_file() and key_path.is_file()):
            _create(cert_path, key_path, hostname)
    return cert_path, key_path


def _create(cert_path: Path, key_path: Path, hostname: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hostname)
    _write_atomic(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ), mode=0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    log.info("created a self-signed certificate for %s in %s", hostname, cert_path.parent)


def _self_signed(key: ec.EllipticCurvePrivateKey, hostname: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")]
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2+) for the given PEM files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_path), str(key_path))
    return context
