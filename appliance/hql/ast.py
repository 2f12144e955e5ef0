"""HQL abstract syntax tree: conditions combined with and/or/not; values already checked."""

from __future__ import annotations

import dataclasses
from typing import TypeAlias

# A checked value: text, an integer, Unix seconds, or a (msgid, queue id) pair for messageid.
Value: TypeAlias = "str | int | float | tuple[str, int]"


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """`field OP value`; `key` is the metadata key for `metadata.KEY`, else None."""

    field: str
    op: str
    value: Value
    pos: int  # where the field name starts
    value_pos: int
    key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    pos: int


@dataclasses.dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node: TypeAlias = "Condition | Not | And | Or"
