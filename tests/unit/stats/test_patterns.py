"""Key patterns in memory (live rate windows) follow the SQL LIKE rule of appliance.stats.patterns."""

from __future__ import annotations

import pytest

from appliance.stats.patterns import matches


@pytest.mark.parametrize(("value", "pattern", "expected"), [
    ("alice", "", True),
    ("alice", "alice", True),
    ("alice", "alic", False),
    ("alice", "a%", True),
    ("alice", "%ce", True),
    ("alice", "%li%", True),
    ("alice", "b%", False),
    ("a_b", "a_%", True),
    ("axb", "a_%", False),  # `_` is literal, as in match()
    ("a.b", "a.%", True),
    ("axb", "a.%", False),  # no regex leaks through
    ("a\\b", "a\\%", True),
    ("line\nbreak", "line%", True),
    ("Alice", "a%", False),  # case-sensitive (PostgreSQL's LIKE)
])
def test_matches(value: str, pattern: str, expected: bool) -> None:
    assert matches(value, pattern) is expected
