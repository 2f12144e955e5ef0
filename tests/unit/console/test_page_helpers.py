"""Pure parts of the console's pages: config problems read from a fault, rate thresholds, the
trash view, a drain's ETA and a suspension's ttl."""

from __future__ import annotations

import pytest
from appliance_client.cluster import ttl_seconds

from appliance.console.pages.config import problems_of
from appliance.console.pages.jobs import eta
from appliance.console.pages.rates import RateView
from appliance.console.pages.trash import TrashView


def test_every_problem_of_a_configtextset_fault() -> None:
    message = ("invalid configuration: line 3, column 5: TOML syntax: Expected ']'; "
               "line 7, column 1: smtp.processes: Input should be a valid integer; got 'x; y'")
    assert problems_of(message) == [
        {"line": 3, "column": 5, "message": "TOML syntax: Expected ']'"},
        {"line": 7, "column": 1, "message": "smtp.processes: Input should be a valid integer; got 'x; y'"},
    ]
    assert problems_of("access denied: this user may not call configTextSet") == []


def test_rate_thresholds_colour_and_order() -> None:
    view = RateView.from_args({"ns": " outbound ", "warn": "9", "crit": "3"})
    assert (view.ns, view.warn, view.crit) == ("outbound", 3, 9)  # swapped into order
    assert [view.level(n) for n in (0, 2, 3, 8, 9, 100)] == ["ok", "ok", "warn", "warn", "crit", "crit"]
    assert RateView.from_args({"warn": "x"}).warn == RateView.warn
    assert "ns=outbound" in view.query() and "crit=9" in view.query()


def test_trash_view_keeps_known_sizes_only() -> None:
    view = TrashView.of({"filter": " deletedby=ops ", "size": "25"})
    assert (view.filter, view.size) == ("deletedby=ops", 25)
    assert view.query() == {"filter": "deletedby=ops", "size": "25"}
    assert TrashView.of({"size": "7"}).size == TrashView.size
    assert TrashView.of({"size": "x"}).query() == {}


def test_eta_in_words() -> None:
    assert [eta(s) for s in (0, 42, 185.4, 3725, None)] == [
        "0 s", "42 s", "3 min 05 s", "1 h 02 min", "0 s"]


def test_ttl_as_typed() -> None:
    assert [ttl_seconds(t) for t in ("90", "90s", "15m", " 2H ", "1d")] == [90, 90, 900, 7200, 86400]
    for bad in ("", "h", "1.5h", "-1", "2w"):
        with pytest.raises(ValueError, match="expected seconds"):
            ttl_seconds(bad)
