"""Dotted keys into the config document: list, get and set single values, keeping the layout.

Key scheme: section and field names joined by dots (`queue.workers`, `api.listen`). Entries of
a list of tables (`listeners`, `transports`) are named by their `id` or by their 0-based index:
`listeners.inbound.port` and `listeners.0.port` are the same key; `configKeys` lists the id
form. Scripts are keys too: `scripts.<id>` holds the script's source. A whole array value such
as `queue.retry_schedule` is one key.

Values are text. Where the key holds a string (per the schema, or any `scripts.*` key) the
text is taken verbatim; otherwise it is read as a TOML value (`8`, `true`, `[60, 300]`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tomlkit
from tomlkit.container import Container
from tomlkit.exceptions import ParseError
from tomlkit.items import AoT, Table

from appliance.config.document import parse
from appliance.errors import InvalidInput, NotFound


def split_key(key: str) -> list[str]:
    parts = key.strip().split(".")
    if not key.strip() or any(not p for p in parts):
        raise InvalidInput(f"invalid key {key!r}: expected names joined by dots, e.g. queue.workers")
    return parts


def config_keys(text: str) -> list[tuple[str, str]]:
    """Every key of the validated document (defaults included) with its value as text."""
    out: list[tuple[str, str]] = []
    _flatten(parse(text).model_dump(), [], out)
    return out


@dataclasses.dataclass(frozen=True)
class KeyState:
    """A key's value in the current revision, the value in force on this node, and where that
    comes from: `default` (not written), `revision` (the shared text), `local` (this node's
    override) or `flag`: the running node holds another value than the revision with the
    overrides gives, which is what a command-line flag (--smtp-listen, --relay) does; for the
    moment between a commit and its application on the node, a changed key reads `flag` too."""

    key: str
    value: str
    effective: str
    source: str


def key_states(text: str, local: list[tuple[str, str]], running: dict[str, Any]) -> list[KeyState]:
    """Every key of `text` (defaults included) with what `running` (the node's Config as
    model_dump(), flags applied) holds for it; `local` are the node's overrides."""
    shared = dict(config_keys(text))
    with_local = dict(config_keys(set_keys(text, local))) if local else shared
    written: list[tuple[str, str]] = []
    _flatten(tomlkit.parse(text).unwrap(), [], written)
    in_text = {k for k, _ in written}
    local_keys = {k for k, _ in local}
    in_force: list[tuple[str, str]] = []
    _flatten(running, [], in_force)
    effective = dict(in_force)
    out = []
    for key in sorted(set(shared) | set(effective)):
        value = shared.get(key, "")
        now = effective.get(key, with_local.get(key, value))
        if now != with_local.get(key, value):
            source = "flag"
        elif key in local_keys or (key in with_local and with_local[key] != value):
            source = "local"
        elif key in in_text:
            source = "revision"
        else:
            source = "default"
        out.append(KeyState(key, value, now, source))
    return out


def key_get(text: str, key: str) -> str:
    """The value of `key` as text (NotFound for a key that does not exist)."""
    node: Any = parse(text).model_dump()
    for part in split_key(key):
        node = _step(node, part, key)
    return _render(node)


def key_set(text: str, key: str, value: str) -> str:
    """`text` with `key` set to `value`, comments and layout kept; the result is validated."""
    new = set_keys(text, [(key, value)])
    parse(new)
    return new


def set_keys(text: str, pairs: list[tuple[str, str]]) -> str:
    """Apply several key settings in order without validating in between (overrides)."""
    dump = parse(text).model_dump()
    doc = tomlkit.parse(text)
    for key, value in pairs:
        parts = split_key(key)
        _assign(doc, parts, _typed(dump, parts, value), key, dump)
    return doc.as_string()


def _flatten(node: Any, prefix: list[str], out: list[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for name, child in node.items():
            _flatten(child, [*prefix, str(name)], out)
    elif isinstance(node, list) and node and all(isinstance(e, dict) and "id" in e for e in node):
        for entry in node:
            _flatten(entry, [*prefix, str(entry["id"])], out)
    else:
        out.append((".".join(prefix), _render(node)))


def _step(node: Any, part: str, key: str) -> Any:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list):
        if part.isdigit() and int(part) < len(node):
            return node[int(part)]
        for entry in node:
            if isinstance(entry, dict) and entry.get("id") == part:
                return entry
    raise NotFound(f"no config key {key!r}")


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)) and not value:
        return "{}" if isinstance(value, dict) else "[]"
    return tomlkit.item(value).as_string()


def _typed(dump: dict[str, Any], parts: list[str], value: str) -> Any:
    current: Any = dump
    try:
        for part in parts:
            current = _step(current, part, "")
    except NotFound:
        current = None
    if isinstance(current, str) or parts[0] == "scripts":
        return tomlkit.string(value, multiline="\n" in value) if "\n" in value else value
    try:
        return tomlkit.parse(f"v = {value}")["v"]
    except ParseError:
        if current is None:
            return value  # a key the schema may not know: the validation says what is wrong
        raise InvalidInput(f"{'.'.join(parts)}: {value!r} is not a valid value "
                           f"(expected a value like {_render(current)})") from None


def _assign(doc: Container, parts: list[str], value: Any, key: str, dump: dict[str, Any]) -> None:
    node: Any = doc
    for depth, part in enumerate(parts[:-1]):
        node = _descend(node, part, key, dump if depth == 0 else None)
    if isinstance(node, AoT):
        raise InvalidInput(f"{key!r} names a whole entry; set one of its fields, e.g. {key}.port")
    node[parts[-1]] = value  # tomlkit keeps the line's comment and the surrounding layout


def _descend(node: Any, part: str, key: str, dump: dict[str, Any] | None) -> Any:
    if isinstance(node, AoT):
        if part.isdigit() and int(part) < len(node):
            return node[int(part)]
        for entry in node:
            if entry.get("id") == part:
                return entry
        raise NotFound(f"no config key {key!r}: there is no entry {part!r}")
    if part not in node:
        default = dump.get(part) if dump is not None else None
        if isinstance(default, list):
            node[part] = _written_out(default)  # the defaults, so that one entry can change
        else:
            node[part] = tomlkit.table()  # a section written only as defaults so far
    child = node[part]
    if not isinstance(child, (Table, AoT, dict)):
        raise InvalidInput(f"{key!r}: {part!r} holds a value, not a section")
    return child


def _written_out(entries: list[Any]) -> AoT:
    aot = tomlkit.aot()
    for entry in entries:
        table = tomlkit.table()
        for name, value in entry.items():
            table[name] = value
        aot.append(table)
    return aot
