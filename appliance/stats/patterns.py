"""Key patterns of statList/statClear/hslRate: an exact value, a `%` pattern, or empty for any."""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import InstrumentedAttribute

from appliance.errors import InvalidInput

MAX_PAGE = 10_000


def match(column: InstrumentedAttribute[str], pattern: str) -> ColumnElement[bool]:
    """Empty matches anything; `%` is the only wildcard (`_` and `\\` are literal)."""
    if not pattern:
        return true()
    if "%" not in pattern:
        return column == pattern
    escaped = pattern.replace("\\", "\\\\").replace("_", "\\_")
    return column.like(escaped, escape="\\")


def matches(value: str, pattern: str) -> bool:
    """The in-memory twin of match(), for live rate windows (case-sensitive, as on PostgreSQL)."""
    if not pattern:
        return True
    if "%" not in pattern:
        return value == pattern
    regex = ".*".join(re.escape(part) for part in pattern.split("%"))
    return re.fullmatch(regex, value, re.DOTALL) is not None


def check_page(offset: int, limit: int) -> None:
    if offset < 0:
        raise InvalidInput("offset must be 0 or more")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE}")
