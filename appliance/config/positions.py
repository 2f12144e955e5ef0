"""Where each key of a TOML text is written: a tomlkit parse that remembers offsets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tomlkit.container import Container, OutOfOrderTableProxy
from tomlkit.items import AoT, Array, InlineTable, Item, Table
from tomlkit.parser import Parser


class _RecordingParser(Parser):
    """tomlkit's parser, noting the source offset at which each item starts.

    tomlkit keeps layout but not positions; its parser knows the offset while it builds each
    item, so a thin subclass records it (keyed by the item's identity in the parsed document).
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.offsets: dict[int, int] = {}

    def _parse_key_value(self, parse_comment: bool = False) -> Any:
        self._src.advance_while(frozenset(" \t"))  # the key's indent is not where the key is
        start = self._idx
        key, value = super()._parse_key_value(parse_comment)
        self.offsets[id(value)] = start
        return key, value

    def _parse_table(self, parent_name: Any = None, parent: Any = None) -> Any:
        start = self._idx
        key, value = super()._parse_table(parent_name, parent)
        self.offsets[id(value)] = start
        return key, value

    def _parse_value(self) -> Item:
        start = self._idx
        value = super()._parse_value()
        self.offsets.setdefault(id(value), start)
        return value


class Positions:
    """Maps a location such as ("listeners", 1, "port") to a 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self._text = text
        parser = _RecordingParser(text)
        self._doc = parser.parse()
        self._offsets = parser.offsets

    def locate(self, loc: Sequence[str | int]) -> tuple[int, int]:
        """The position of the innermost item of `loc` that is written in the text."""
        best: int | None = None
        node: Any = self._doc
        for part in loc:
            node = _child(node, part)
            if node is None:
                break
            offset = self._offset(node)
            if offset is not None:
                best = offset
        return self._line_col(best if best is not None else 0)

    def _offset(self, item: Any) -> int | None:
        """Recorded offset, or the earliest of its children's (dotted keys make tables)."""
        if id(item) in self._offsets:
            return self._offsets[id(item)]
        found = [self._offset(child) for child in _children(item)]
        known = [f for f in found if f is not None]
        return min(known) if known else None

    def _line_col(self, offset: int) -> tuple[int, int]:
        before = self._text[:offset]
        line = before.count("\n") + 1
        return line, offset - (before.rfind("\n") + 1) + 1


def _child(node: Any, part: str | int) -> Any:
    try:
        if isinstance(node, (AoT, Array)):
            return node[int(part)] if isinstance(part, int) or str(part).isdigit() else None
        container = _container(node)
        if container is not None and isinstance(part, str) and part in container:
            return container.item(part)
    except (IndexError, KeyError, ValueError):
        return None
    return None


def _container(node: Any) -> Any:  # a Container or OutOfOrderTableProxy (both have .item)
    if isinstance(node, (Container, OutOfOrderTableProxy)):
        return node
    if isinstance(node, (Table, InlineTable)):
        return node.value
    return None


def _children(item: Any) -> list[Any]:
    if isinstance(item, (AoT, Array)):
        return list(item)
    container = _container(item)
    if container is None:
        return []
    return [container.item(k) for k in container.keys()]
