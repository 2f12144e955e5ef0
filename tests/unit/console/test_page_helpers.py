"""Pure parts of the console's pages: config problems read from a fault, rate thresholds."""

from __future__ import annotations

from appliance.console.pages.config import problems_of
from appliance.console.pages.rates import RateView


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
