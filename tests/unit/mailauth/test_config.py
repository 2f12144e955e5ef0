"""The [mailauth] section: defaults, validation, and a new revision applied without restart."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from appliance.config.document import parse
from appliance.config.schema import Config, MailAuthSection
from appliance.mailauth.dns import Answer
from appliance.policy.authflow import AuthenticatedData
from appliance.policy.flow import SessionInfo


def test_off_by_default_and_validated() -> None:
    section = Config().mailauth
    assert section.enabled is False and section.reject and section.quarantine
    assert MailAuthSection(nameservers=["192.0.2.1", "127.0.0.1:5353", "[::1]:53"]).nameservers
    for bad in ({"nameservers": ["dns.example"]}, {"temperror": "maybe"}, {"timeout": 0},
                {"quarantine_name": "bad name"}):
        with pytest.raises(ValidationError):
            MailAuthSection(**bad)  # type: ignore[arg-type]


def test_forensic_reports_are_off_by_default_and_may_be_asked_for() -> None:
    assert parse("[mailauth]\nenabled = true\n").mailauth.forensic_reports is False
    assert parse("[mailauth]\nforensic_reports = true\n").mailauth.forensic_reports
    assert parse("[mailauth]\nenabled = true\naggregate_reports = true\n").mailauth.aggregate_reports


class Counting:
    def __init__(self) -> None:
        self.made = 0

    def __call__(self, section: MailAuthSection) -> "Counting":
        self.made += 1
        return self

    def query(self, name: str, rdtype: str, *, timeout: float | None = None) -> Answer:
        return Answer()


def test_revisions_apply_without_restart() -> None:
    factory = Counting()
    old = Config()
    part = AuthenticatedData(old, lookup=factory)
    session = SessionInfo(listener="inbound", client_ip="192.0.2.1")
    assert not part.applies(session)
    on = old.model_copy(update={"mailauth": MailAuthSection(enabled=True, listeners=["inbound"])})
    part.apply(old, on)
    assert part.applies(session) and factory.made == 0  # nothing built before the first check
    assert part.checker is part.checker and factory.made == 1
    assert not part.applies(SessionInfo(listener="submission", client_ip="192.0.2.1"))
    session.authenticated = True
    assert not part.applies(session)  # submission clients are not checked by default
    moved = on.model_copy(update={"mailauth": MailAuthSection(enabled=True, nameservers=["192.0.2.53"])})
    part.apply(on, moved)
    assert factory.made == 2  # a new resolver for the new servers
