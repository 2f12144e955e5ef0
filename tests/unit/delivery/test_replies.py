"""SMTP reply classification and DSN status codes."""

from __future__ import annotations

import pytest

from appliance.replies import Kind, Reply, classify, connection_error, dsn_status, enhanced_status


@pytest.mark.parametrize(
    ("code", "kind"),
    [(250, Kind.SUCCESS), (251, Kind.SUCCESS), (421, Kind.TEMPORARY), (451, Kind.TEMPORARY),
     (452, Kind.TEMPORARY), (550, Kind.PERMANENT), (554, Kind.PERMANENT), (0, Kind.TEMPORARY),
     (354, Kind.TEMPORARY), (999, Kind.TEMPORARY)],
)
def test_classify(code: int, kind: Kind) -> None:
    assert classify(code) is kind


def test_connection_errors_are_temporary() -> None:
    reply = connection_error(ConnectionRefusedError(111, "Connection refused"))
    assert reply.kind is Kind.TEMPORARY
    assert "Connection refused" in str(reply)
    assert str(connection_error(TimeoutError())) == "connection error: TimeoutError"


def test_enhanced_status_is_found_in_text() -> None:
    assert enhanced_status("5.1.1 <a@b>: no such user") == "5.1.1"
    assert enhanced_status("mailbox full 4.2.2 try later") == "4.2.2"
    assert enhanced_status("no code here 1.2.3") is None


def test_dsn_status_keeps_permanent_codes_and_marks_expiry() -> None:
    assert dsn_status(Reply(550, "5.1.1 no such user")) == "5.1.1"
    assert dsn_status(Reply(554, "rejected")) == "5.0.0"
    assert dsn_status(Reply(550, "4.2.2 odd server")) == "5.0.0"
    assert dsn_status(Reply(451, "4.3.0 later"), expired=True) == "4.4.7"
    assert dsn_status(Reply(0, "connection error: refused")) == "4.4.7"
