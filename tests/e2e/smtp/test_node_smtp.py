"""A real node with STARTTLS and AUTH, driven by smtplib and swaks, relaying to a sink."""

from __future__ import annotations

import shutil
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.delivery.sink import Sink
from tests.support.node import RunningNode
from tests.support.wait import wait_until

CONFIG = """
[node]
hostname = "mx.appliance.test"

[[listeners]]
id = "submission"
port = 2525
starttls = true
auth = true
require_auth = true
"""


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("tls"), config_text=CONFIG,
                     relay=("127.0.0.1", sink.port)) as running:
        yield running


def delivered(sink: Sink, msgid: str) -> bytes:
    wait_until(lambda: any(msgid.encode() in m.content for m in sink.messages))
    return next(m.content for m in sink.messages if msgid.encode() in m.content)


def test_starttls_with_the_self_signed_certificate_then_auth(tls_node: RunningNode, sink: Sink) -> None:
    cafile = Path(tls_node.data_dir) / "tls" / "node.crt"
    context = ssl.create_default_context(cafile=str(cafile))
    with smtplib.SMTP("127.0.0.1", tls_node.smtp_port, timeout=30) as client:
        client.ehlo("client.example")
        assert client.mail("s@example.com")[0] == 530  # require_auth, and AUTH only after TLS
        client.starttls(context=context)  # verifies the node's certificate for 127.0.0.1
        client.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("admin", "wrong")
        client.login("admin", tls_node.admin_password)
        client.mail("s@example.com")
        client.rcpt("r@example.org")
        code, reply = client.data(b"Subject: over tls\r\n\r\nsecret\r\n")
    assert code == 250
    content = delivered(sink, reply.decode().rsplit(" ", 1)[1])
    assert b"by mx.appliance.test (appliance)" in content and b"with ESMTPSA" in content


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_swaks_starttls_and_auth(tls_node: RunningNode, sink: Sink, mechanism: str) -> None:
    def swaks(password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{tls_node.smtp_port}", "--from", "s@example.com",
             "--to", f"swaks-{mechanism}@example.org", "--tls", "--auth", mechanism,
             "--auth-user", "admin", "--auth-password", password,
             "--header", f"Subject: swaks {mechanism}", "--timeout", "30"],
            capture_output=True, text=True, timeout=60)

    bad = swaks("wrong")
    assert bad.returncode != 0 and "535" in bad.stdout
    good = swaks(tls_node.admin_password)
    assert good.returncode == 0, good.stdout
    msgid = good.stdout.split("queued as ")[1].split()[0]
    content = delivered(sink, msgid)
    assert f"Subject: swaks {mechanism}".encode() in content
