"""A live node: guesses over SMTP AUTH block that (address, user) for the API too, not the
other users behind the address; every failure is audited."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import select

from appliance.db.engine import Store
from appliance.db.models import AuditRecord
from appliance.settings import default_database_url
from tests.support.node import RunningNode

CONFIG = '''
[[listeners]]
id = "inbound"
port = 2525
auth = true

[api]
auth_failures_before_throttle = 4
auth_failures_per_address = 12
'''
LOGIN = ('<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:halon">'
         '<e:Body><t:login/></e:Body></e:Envelope>')


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("auth-throttle"), config_text=CONFIG) as running:
        for name in ("alice", "bob"):
            done = running.cli("user", "add", name, "--role", "readonly", "--password-stdin",
                               input_text=f"{name}-pw\n")
            assert done.returncode == 0, done.stderr
        yield running


def smtp_auth(node: RunningNode, user: str, password: str, source: str = "127.0.0.1") -> int:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    with smtplib.SMTP("127.0.0.1", node.smtp_port, timeout=10,
                      source_address=(source, 0)) as client:
        client.ehlo("client.example")
        return int(client.docmd("AUTH", f"PLAIN {token}")[0])


def soap_login(node: RunningNode, user: str, password: str) -> int:
    return requests.post(node.soap_url, data=LOGIN, auth=(user, password), timeout=10,
                         headers={"Content-Type": "text/xml", "SOAPAction": '"login"'}).status_code


def test_smtp_guesses_throttle_the_user_over_both_protocols(node: RunningNode) -> None:
    assert [smtp_auth(node, "alice", f"guess{i}") for i in range(4)] == [535] * 4
    assert smtp_auth(node, "alice", "alice-pw") == 454
    assert soap_login(node, "alice", "alice-pw") == 429  # the same throttle, in the store
    assert smtp_auth(node, "bob", "bob-pw") == 235  # not a lockout of the whole address
    assert soap_login(node, "bob", "bob-pw") == 200
    store = Store(default_database_url(node.data_dir))
    try:
        with store.transaction(read_only=True) as session:
            rows = list(session.scalars(select(AuditRecord).where(
                AuditRecord.operation == "login", AuditRecord.username == "alice")))
    finally:
        store.dispose()
    assert len(rows) == 4 and all('"smtp"' in r.arguments for r in rows)


def test_cycling_user_names_blocks_the_address(node: RunningNode) -> None:
    source = "127.0.0.9"
    codes = [smtp_auth(node, f"user{i}", "x", source) for i in range(12)]
    assert set(codes) == {535}
    assert smtp_auth(node, "bob", "bob-pw", source) == 454
    assert smtp_auth(node, "bob", "bob-pw") == 235
