"""What a restricted user's command line becomes (appliance.commands.scope) and queuestat's option."""

from __future__ import annotations

import pytest

from appliance.commands import queuestat
from appliance.commands.scope import scoped_argv
from appliance.errors import FilterError, Forbidden


def test_counting_commands_get_the_restriction_appended() -> None:
    assert scoped_argv(["queuestat"], "to~%@t.example") == [
        "queuestat", "--restriction", "to~%@t.example"]
    assert scoped_argv(["queuestat"], "") == ["queuestat"]
    assert scoped_argv(["searchlog", "--", "x"], "to~%@t.example") == ["searchlog", "--", "x"]


def test_node_wide_commands_are_refused() -> None:
    with pytest.raises(Forbidden, match="statd shows node-wide figures"):
        scoped_argv(["statd", "-g", "queue"], "to~%@t.example")
    assert scoped_argv(["statd", "-g", "queue"], "") == ["statd", "-g", "queue"]


def test_queuestat_restrictions_are_checked_before_running() -> None:
    assert queuestat.parse([]) == ()
    assert queuestat.parse(["--restriction", "to~a", "--restriction", "queue=HOLD"]) == (
        "to~a", "queue=HOLD")
    with pytest.raises(FilterError):
        queuestat.parse(["--restriction", "frm=x"])
