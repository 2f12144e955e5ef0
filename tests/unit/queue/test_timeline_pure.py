"""Pure parts of the queue workflows: alert states, attempts left, RFC 3463 words, relay ids."""

from __future__ import annotations

from appliance import enhanced
from appliance.alerts.rules import FIRING, OK, step
from appliance.db.models_timeline import SavedQuery
from appliance.delivery.retry import attempts_left
from appliance.smtp.message import received_header, relayed_from


def _query(threshold: int = 5, minutes: float = 2.0) -> SavedQuery:
    return SavedQuery(owner="ops", name="q", filter="", threshold=threshold, minutes=minutes,
                      state=OK, since=0.0, above_since=0.0, last_count=0, last_checked=0.0)


def test_alert_fires_only_after_staying_above_for_its_minutes_and_clears_at_once() -> None:
    q = _query()
    assert step(q, 6, 100.0) is None and q.above_since == 100.0
    assert step(q, 9, 219.0) is None  # 119 s above: not yet two minutes
    assert step(q, 7, 220.0) == FIRING and (q.state, q.since, q.last_count) == (FIRING, 220.0, 7)
    assert step(q, 8, 230.0) is None  # still firing: nothing new to tell
    assert step(q, 5, 240.0) == OK and (q.state, q.since, q.above_since) == (OK, 240.0, 0.0)
    assert step(q, 6, 250.0) is None and q.above_since == 250.0  # the clock starts again


def test_a_dip_restarts_the_wait() -> None:
    q = _query(minutes=1)
    step(q, 6, 0.0)
    step(q, 1, 30.0)
    assert step(q, 6, 61.0) is None and step(q, 6, 121.0) == FIRING


def test_attempts_left_follows_the_schedule_to_the_lifetime() -> None:
    # attempts at 0, 60, 360, 660 (the last at the end of a 660 s lifetime)
    assert attempts_left(0, [60, 300], 0.0, received=0.0, lifetime=660) == 4
    assert attempts_left(3, [60, 300], 660.0, received=0.0, lifetime=660) == 1
    assert attempts_left(0, [10], 0.0, received=0.0, lifetime=10**9) == 10_000  # capped


def test_enhanced_codes_in_words() -> None:
    assert enhanced.find("550 5.1.1 <x@y>: user unknown") == "5.1.1"
    assert enhanced.meaning("5.1.1") == "permanent failure (will not succeed as sent): bad destination mailbox address"
    assert enhanced.meaning("4.4.1").endswith("no answer from host")
    assert enhanced.meaning("4.7.99").endswith("security or policy status")  # unknown detail: its subject
    assert enhanced.find("421 closing") == "" and enhanced.meaning("9.9.9") == ""


def test_relayed_from_reads_the_newest_received_header_of_this_product() -> None:
    up = "0f4b6c3e-1111-4222-8333-944445555666"
    ours = received_header(helo="a", client_ip="127.0.0.1", hostname="a.test", protocol="ESMTP",
                           msgid=up, recipients=("r@x",), when=0)
    other = b"Received: from z by mx.other (Postfix) id 1234; x\r\n"
    assert relayed_from(other + ours + b"Subject: s\r\n\r\nReceived: by b (appliance) id " + up.encode()) == up
    assert relayed_from(other + b"Subject: s\r\n\r\nbody") == ""
    assert relayed_from(b"Received: by x (appliance) id not-a-uuid\r\n\r\n") == ""
