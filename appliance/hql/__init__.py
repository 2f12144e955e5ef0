"""HQL, the queue and history filter language: parse, check and compile to SQLAlchemy."""

from __future__ import annotations

from appliance.hql.compiler import compile_filter
from appliance.hql.parser import parse

__all__ = ["compile_filter", "parse", "restrict"]


def restrict(restriction: str, filter: str) -> str:  # noqa: A002 - the API's argument name
    """`filter` limited to what `restriction` allows: both joined with `&&` (either may be empty).

    Both parts are parsed on their own first, so a filter can never reach into the restriction
    (an unclosed quote or parenthesis is its own error, at its own position).
    """
    parts = [p for p in (restriction, filter) if p.strip()]
    for part in parts:
        parse(part)
    return " && ".join(parts)
