"""The node's self-signed certificate: made once even when every process starts at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from appliance.tls import ensure_certificate, server_context


def _make(tls_dir: str) -> bytes:
    cert, _key = ensure_certificate(Path(tls_dir), "mx.appliance.test")
    return cert.read_bytes()


def test_processes_starting_together_share_one_matching_pair(tmp_path: Path) -> None:
    tls_dir = tmp_path / "tls"
    with multiprocessing.get_context("fork").Pool(8) as pool:
        seen = pool.map(_make, [str(tls_dir)] * 32)
    assert len(set(seen)) == 1  # every caller got the one certificate on disk
    assert seen[0] == (tls_dir / "node.crt").read_bytes()
    # The key on disk belongs to that certificate (load_cert_chain checks the pair).
    server_context(tls_dir / "node.crt", tls_dir / "node.key")
    assert oct((tls_dir / "node.key").stat().st_mode & 0o777) == "0o600"


def test_an_existing_pair_is_kept(tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path, "mx.appliance.test")
    before = (cert.read_bytes(), key.read_bytes())
    assert ensure_certificate(tmp_path, "other.example") == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == before
    subject = x509.load_pem_x509_certificate(cert.read_bytes()).subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mx.appliance.test"
