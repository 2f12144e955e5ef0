"""A fixture zone for the mail-auth checks (internet DNS stands in behind the Lookup Protocol)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.config.schema import MailAuthSection
from appliance.mailauth.dns import Budget
from tests.support.dnszone import Zone, ZoneLookup


@pytest.fixture
def zone() -> Zone:
    return Zone()


@pytest.fixture
def budget(zone: Zone) -> Budget:
    return Budget(ZoneLookup(zone), seconds=10.0, per_lookup=3.0)


def settings(**changes: object) -> MailAuthSection:
    return MailAuthSection(enabled=True, **changes)  # type: ignore[arg-type]


def ns(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(**kw)
