"""`column IN (values)` with the values bound as ONE parameter, for statements over thousands."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, BindParameter, ColumnElement, Text, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session


def in_values(session: Session, column: InstrumentedAttribute[int] | InstrumentedAttribute[str],
              values: Sequence[int] | Sequence[str]) -> ColumnElement[bool]:
    """`column IN values` as one bound parameter (an array on PostgreSQL, a JSON array on
    SQLite, both answered from the column's index): rendering thousands of bind parameters
    per statement cost more than running it. `values` are all ids or all strings."""
    dialect = session.get_bind().dialect.name
    strings = bool(values) and isinstance(values[0], str)
    return _in(dialect, column, bindparam(None, bound_values(dialect, values), type_=_type(dialect, strings)))


def in_bound(dialect: str, column: InstrumentedAttribute[int] | InstrumentedAttribute[str],
             name: str, *, strings: bool) -> ColumnElement[bool]:
    """`in_values` for a statement built once and run many times: its values are the
    parameter `name`, given as `bound_values(dialect, values)`."""
    return _in(dialect, column, bindparam(name, type_=_type(dialect, strings)))


def bound_values(dialect: str, values: Sequence[int] | Sequence[str]) -> object:
    return list(values) if dialect == "postgresql" else json.dumps(list(values))


def _type(dialect: str, strings: bool) -> Any:
    if dialect == "postgresql":
        return ARRAY(Text if strings else BigInteger)
    return Text


def _in(dialect: str, column: InstrumentedAttribute[int] | InstrumentedAttribute[str],
        param: BindParameter[Any]) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return column == any_(param)
    table = func.json_each(param).table_valued("value")
    return column.in_(select(table.c.value))
