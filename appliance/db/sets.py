"""`column IN (values)` with the values bound as ONE parameter, for statements over thousands."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import BigInteger, ColumnElement, Text, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session


def in_values(session: Session, column: InstrumentedAttribute[int] | InstrumentedAttribute[str],
              values: Sequence[int] | Sequence[str]) -> ColumnElement[bool]:
    """`column IN values` as one bound parameter (an array on PostgreSQL, a JSON array on
    SQLite, both answered from the column's index): rendering thousands of bind parameters
    per statement cost more than running it. `values` are all ids or all strings."""
    if session.get_bind().dialect.name == "postgresql":
        kind = Text if values and isinstance(values[0], str) else BigInteger
        return column == any_(bindparam(None, list(values), type_=ARRAY(kind)))
    table = func.json_each(json.dumps(list(values))).table_valued("value")
    return column.in_(select(table.c.value))
