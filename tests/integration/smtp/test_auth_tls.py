"""SMTP AUTH PLAIN/LOGIN against the node's users, require_auth, and STARTTLS."""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from sqlalchemy import select

from appliance.access.users import add_user
from appliance.db.engine import Store
from appliance.db.models import QueueEntry
from appliance.queue.spool import Spool
from tests.integration.smtp.conftest import SmtpHarness

MESSAGE = b"Subject: auth\r\n\r\nbody\r\n"

# AUTH and TLS do not depend on the backend (reception and intake run on both): SQLite only.
pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
def user(store: Store) -> tuple[str, str]:
    with store.transaction() as session:
        add_user(session, "mailer", "s3cret pass", role="readonly")
    return "mailer", "s3cret pass"


def queued(store: Store) -> list[QueueEntry]:
    with store.transaction(read_only=True) as session:
        return list(session.scalars(select(QueueEntry).order_by(QueueEntry.id)))


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_good_records_the_sasl_user(smtp_server: Callable[..., SmtpHarness], store: Store,
                                         spool: Spool, user: tuple[str, str], mechanism: str) -> None:
    harness = smtp_server(auth=True, require_auth=True)
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        client.ehlo("x")
        assert mechanism in client.esmtp_features["auth"]
        assert client.mail("a@example.com")[0] == 530  # require_auth
        client.user, client.password = user
        mech = {"PLAIN": client.auth_plain, "LOGIN": client.auth_login}[mechanism]
        assert client.auth(mechanism, mech)[0] == 235
        assert client.sendmail("a@example.com", ["b@example.org"], MESSAGE) == {}
    (entry,) = queued(store)
    assert entry.sasl == "mailer"
    assert b"with ESMTPA" in spool.read(entry.path)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_bad_password_or_unknown_user_is_535(smtp_server: Callable[..., SmtpHarness],
                                                   user: tuple[str, str], mechanism: str) -> None:
    harness = smtp_server(auth=True)
    for name, password in [(user[0], "wrong"), ("nobody", user[1])]:
        with smtplib.SMTP("127.0.0.1", harness.port) as client:
            client.ehlo("x")
            with pytest.raises(smtplib.SMTPAuthenticationError) as err:
                client.login(name, password)
            assert err.value.smtp_code == 535


def test_auth_garbage_gets_501_and_the_session_goes_on(smtp_server: Callable[..., SmtpHarness]) -> None:
    harness = smtp_server(auth=True)
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        client.ehlo("x")
        assert client.docmd("AUTH", "PLAIN !!!notbase64")[0] == 501
        no_nuls = base64.b64encode(b"just-one-part").decode()
        assert client.docmd("AUTH", f"PLAIN {no_nuls}")[0] == 501
        assert client.noop()[0] == 250


def test_auth_is_not_offered_when_the_listener_has_it_off(smtp_server: Callable[..., SmtpHarness]) -> None:
    harness = smtp_server()
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        client.ehlo("x")
        assert "auth" not in client.esmtp_features
        assert client.docmd("AUTH", "PLAIN AGZvbwBiYXI=")[0] == 504


def test_starttls_with_the_self_signed_certificate(smtp_server: Callable[..., SmtpHarness], store: Store,
                                                    spool: Spool, user: tuple[str, str], tmp_path: Path) -> None:
    harness = smtp_server(starttls=True, auth=True, require_auth=True)
    context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "node.crt"))
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        client.ehlo("x")
        assert "starttls" in client.esmtp_features
        assert "auth" not in client.esmtp_features  # credentials only after TLS (RFC 4954 §4)
        assert client.docmd("AUTH", "PLAIN AG1haWxlcgBzM2NyZXQgcGFzcw==")[0] == 538
        assert client.starttls(context=context)[0] == 220
        client.ehlo("x")
        client.login(*user)
        assert client.sendmail("a@example.com", ["b@example.org"], MESSAGE) == {}
    (entry,) = queued(store)
    assert (entry.fromserver, entry.listener, entry.helo, entry.sasl) == ("127.0.0.1", "inbound", "x", "mailer")
    assert spool.read(entry.path).startswith(b"Received: from x ([127.0.0.1])")
    assert b"with ESMTPSA" in spool.read(entry.path)


def test_starttls_with_the_configured_certificate(smtp_server: Callable[..., SmtpHarness], tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "mx.test")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    harness = smtp_server(starttls=True, tls_cert=str(cert_path), tls_key=str(key_path))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with smtplib.SMTP("127.0.0.1", harness.port) as client:
        client.starttls(context=context)
        assert client.sendmail("a@example.com", ["b@example.org"], MESSAGE) == {}
    assert not (tmp_path / "tls" / "node.crt").exists()  # the node's own was not needed
