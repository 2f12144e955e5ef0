"""SMTP AUTH under the login throttle the API shares, over real SMTP (smtplib)."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Callable
from typing import Any

from appliance.access import audit
from appliance.access.throttle import ThrottlePolicy
from appliance.access.users import add_user
from appliance.db.engine import Store
from appliance.soap.auth import Authenticator

POLICY = ThrottlePolicy(per_user=3, per_address=6, window=60, block=60)


def plain(user: str, password: str) -> str:
    return "PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def auth(port: int, user: str, password: str, *, source: str = "127.0.0.1") -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10, source_address=(source, 0)) as client:
        client.ehlo("client.example")
        code, _ = client.docmd("AUTH", plain(user, password))
        assert client.noop()[0] == 250  # the session goes on after a refusal
        return code


def users(store: Store) -> None:
    with store.transaction() as s:
        add_user(s, "alice", "alice-pw", role="readonly")
        add_user(s, "bob", "bob-pw", role="readonly")


def test_guesses_are_throttled_per_user_and_audited(store: Store,
                                                    smtp_server: Callable[..., Any]) -> None:
    users(store)
    harness = smtp_server(auth=True)
    harness.server.throttle = POLICY
    assert [auth(harness.port, "alice", f"guess{i}") for i in range(3)] == [535, 535, 535]
    assert auth(harness.port, "alice", "alice-pw") == 454  # blocked: not even checked
    assert auth(harness.port, "bob", "bob-pw") == 235  # another user behind the same address
    assert auth(harness.port, "alice", "alice-pw", source="127.0.0.3") == 235
    # The API's check, on the same store, sees the same block (one throttle for both).
    api = Authenticator(store, policy=POLICY)
    assert api.check("alice", "alice-pw", "127.0.0.1").retry_after > 0
    assert api.check("bob", "bob-pw", "127.0.0.1").level is not None
    with store.transaction(read_only=True) as s:
        rows = [r for r in audit.recent(s) if r.operation == "login"]
    assert len(rows) == 3 and all(r.username == "alice" and r.remote == "127.0.0.1" for r in rows)
    assert all('"smtp"' in r.arguments and "guess" not in r.arguments for r in rows)


def test_a_good_login_by_another_account_does_not_reset_the_count(
        store: Store, smtp_server: Callable[..., Any]) -> None:
    users(store)
    harness = smtp_server(auth=True)
    harness.server.throttle = POLICY
    assert auth(harness.port, "alice", "x") == 535
    assert auth(harness.port, "alice", "y") == 535
    assert auth(harness.port, "bob", "bob-pw") == 235
    assert auth(harness.port, "alice", "z") == 535
    assert auth(harness.port, "alice", "alice-pw") == 454


def test_failures_over_the_api_count_for_smtp_too(store: Store,
                                                  smtp_server: Callable[..., Any]) -> None:
    users(store)
    harness = smtp_server(auth=True)
    harness.server.throttle = POLICY
    api = Authenticator(store, policy=POLICY)
    for i in range(3):
        assert api.check("alice", f"g{i}", "127.0.0.1").level is None
    assert auth(harness.port, "alice", "alice-pw") == 454


def test_many_user_names_from_one_address_hit_the_address_limit(
        store: Store, smtp_server: Callable[..., Any]) -> None:
    users(store)
    harness = smtp_server(auth=True)
    harness.server.throttle = POLICY
    assert {auth(harness.port, f"user{i}", "x", source="127.0.0.4") for i in range(6)} == {535}
    assert auth(harness.port, "bob", "bob-pw", source="127.0.0.4") == 454
    assert auth(harness.port, "bob", "bob-pw") == 235  # other addresses are untouched
