"""AUTH decided by a listener's policy script, over real SMTP: refusals answer at once."""

from __future__ import annotations

import base64
import smtplib
import time
from collections.abc import Iterator

import pytest

from tests.support.node import RunningNode

CONFIG = '''
[scripts]
gate = """
function auth(s, user, password)
  if user == "scripted" then return password == "pw" and accept() or reject() end
  if user == "blocked" then return reject() end
  if user == "later" then return defer() end
end
"""

[[listeners]]
id = "inbound"
port = 2525
auth = true
script = "gate"
'''


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("auth-policy"), config_text=CONFIG) as running:
        yield running


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _auth(port: int, command: str, *lines: str) -> list[tuple[int, bytes]]:
    """Send AUTH and its continuation lines one by one; every reply, each within 10 s."""
    replies = []
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example")
        replies.append(client.docmd("AUTH", command))
        for line in lines:
            if replies[-1][0] != 334:
                break
            client.send(f"{line}\r\n".encode())
            replies.append(client.getreply())
        replies.append(client.noop())  # the session is still in step after the refusal
    return replies


@pytest.mark.parametrize("user", ["blocked", "scripted"])
def test_a_refusal_by_script_answers_535_at_once_plain(node: RunningNode, user: str) -> None:
    started = time.monotonic()
    replies = _auth(node.smtp_port, f"PLAIN {_plain(user, 'wrong')}")
    assert replies[0] == (535, b"5.7.8 Authentication credentials invalid")
    assert replies[-1][0] == 250
    assert time.monotonic() - started < 5


def test_a_refusal_by_script_answers_535_with_login_and_smtplib(node: RunningNode) -> None:
    user = base64.b64encode(b"blocked").decode()
    password = base64.b64encode(b"whatever").decode()
    replies = _auth(node.smtp_port, f"LOGIN {user}", password)
    assert [code for code, _ in replies] == [334, 535, 250]
    # RFC 4954 §4: "*" cancels the exchange, answered with 501
    assert [code for code, _ in _auth(node.smtp_port, "LOGIN", user, "*")] == [334, 334, 501, 250]
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login("blocked", "x")  # smtplib tries PLAIN, then LOGIN
        assert refused.value.smtp_code == 535


def test_acceptance_and_deferral_by_script(node: RunningNode) -> None:
    assert _auth(node.smtp_port, "PLAIN " + _plain("scripted", "pw"))[0][0] == 235
    assert _auth(node.smtp_port, "PLAIN " + _plain("later", "pw"))[0][0] // 100 == 4
    # no script decision: the node's own users decide
    assert _auth(node.smtp_port, "PLAIN " + _plain("admin", node.admin_password))[0][0] == 235
    assert _auth(node.smtp_port, "PLAIN " + _plain("admin", "wrong"))[0][0] == 535
