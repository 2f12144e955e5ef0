"""Secret fields of the config document: redacted for output, kept when written back redacted.

A field is secret when the schema marks it (`json_schema_extra={"secret": "dsn"}` or
`{"secret": True}`) or when its name says so (password, secret, token, api key, private key).
Output shows `PLACEHOLDER` instead of a whole secret value, and instead of only the password of
a DSN (`postgresql://app:********@db/x`, `host=db password=********`), so that the rest stays
readable. Writing a text (or a key) back with the placeholder where a secret was keeps the
stored secret: `restore_text` / `restore_value` put it back before the text is validated and
stored. A placeholder with no stored secret behind it is refused (InvalidInput) rather than
stored as the literal password.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, get_args, get_origin

import tomlkit
from pydantic import BaseModel
from tomlkit.exceptions import TOMLKitError

from appliance.config.schema import Config
from appliance.errors import InvalidInput

PLACEHOLDER = "********"
CHANGED = "********(changed)"  # in a diff's newer text: a secret that differs from the older one
WHOLE, DSN = "whole", "dsn"
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|api_?key|private_?key)", re.IGNORECASE)
# Where a DSN carries its password: URL userinfo, a URL query parameter, a libpq keyword.
_DSN_PASSWORDS = (
    re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@:?#]*:(?P<pw>[^@/?#]*)@"),
    re.compile(r"[?&]password=(?P<pw>[^&#]*)"),
    re.compile(r"(?:^|\s)password\s*=\s*(?P<pw>'(?:[^'\\]|\\.)*'|[^\s']\S*)"),
)

Path = tuple[str, ...]  # field names; "*" stands for any entry of a list or mapping


def secret_fields(model: type[BaseModel] = Config, prefix: Path = ()) -> list[tuple[Path, str]]:
    """Every secret field of the schema with its kind (WHOLE or DSN)."""
    found: list[tuple[Path, str]] = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        marked = extra.get("secret")
        if marked:
            found.append(((*prefix, name), DSN if marked == DSN else WHOLE))
            continue
        inner, entry = _model_of(info.annotation)
        if inner is not None:
            found.extend(secret_fields(inner, (*prefix, name, *entry)))
        elif _SECRET_NAME.search(name):
            found.append(((*prefix, name), WHOLE))
    return found


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, Path]:
    """The model a field holds (directly, or as list/dict entries: then the path adds "*")."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ()
    if get_origin(annotation) in (list, dict):
        last = get_args(annotation)[-1] if get_args(annotation) else None
        if isinstance(last, type) and issubclass(last, BaseModel):
            return last, ("*",)
    return None, ()


def kind_of_key(key: str) -> str | None:
    """WHOLE or DSN when a dotted key (configKeys' form) names a secret field, else None."""
    parts = key.removeprefix("local:").split(".")
    for path, kind in secret_fields():
        if len(path) == len(parts) and all(p in ("*", k) for p, k in zip(path, parts)):
            return kind
    return None


def redact_value(kind: str, value: str) -> str:
    if not value:
        return value
    if kind == WHOLE:
        return PLACEHOLDER
    return _replace_passwords(value, lambda _i, _pw: PLACEHOLDER)


def restore_value(kind: str, new: str, stored: str | None, *, where: str) -> str:
    """`new` with each placeholder replaced by the stored secret it stands for."""
    if kind == WHOLE:
        if new != PLACEHOLDER:
            return new
        if not stored:
            raise InvalidInput(_no_stored(where))
        return stored
    old = [stored[a:b] for a, b in _dsn_spans(stored)] if stored else []

    def back(index: int, password: str) -> str:
        if password != PLACEHOLDER:
            return password
        if index >= len(old):
            raise InvalidInput(_no_stored(where))
        return old[index]

    return _replace_passwords(new, back)


def redact_keys(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """configKeys' (key, value) pairs with secret values redacted."""
    return [(k, redact_value(kind, v) if (kind := kind_of_key(k)) else v) for k, v in pairs]


def redact_text(text: str, *, changed_from: str | None = None) -> str:
    """The config text with every secret value redacted; comments and layout kept.

    With `changed_from` (the older text of a diff), a secret that differs from the one at the
    same place there shows as `CHANGED`, so that a diff still says that it changed."""
    try:
        doc = tomlkit.parse(text)
        old = tomlkit.parse(changed_from) if changed_from is not None else None
    except TOMLKitError:
        return text  # not TOML (never so for a stored revision): nothing can be found in it
    redacted = False
    for path, kind in secret_fields():
        for container, name, where in _locations(doc, path):
            value = container.get(name)
            if isinstance(value, str) and value:
                before = _value_at(old, where) if old is not None else None
                container[name] = _redact_against(kind, str(value), before, old is not None)
                redacted = True
    # Walking tomlkit's tables can regroup an array of tables written in two places; a text
    # without secrets comes back exactly as written.
    return doc.as_string() if redacted else text


def _redact_against(kind: str, value: str, before: str | None, compare: bool) -> str:
    if not compare:
        return redact_value(kind, value)
    if kind == WHOLE:
        return CHANGED if value != before else PLACEHOLDER
    old = [before[a:b] for a, b in _dsn_spans(before)] if before else []
    return _replace_passwords(value, lambda i, pw: (
        PLACEHOLDER if i < len(old) and old[i] == pw else CHANGED))


def loggable_text(text: str) -> str:
    """For the audit log: the text redacted, or only its size when it is not TOML (a broken
    text may still hold a secret where no field can be recognised)."""
    try:
        tomlkit.parse(text)
    except TOMLKitError:
        return f"<{len(text)} characters, not TOML>"
    return redact_text(text)


def restore_text(text: str, stored: str) -> str:
    """`text` with placeholders replaced by the secrets of `stored` at the same place (list
    entries matched by id, else by position). Text that is not TOML is returned unchanged:
    validation then says what is wrong with it."""
    if PLACEHOLDER not in text:
        return text
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError:
        return text
    try:
        old = tomlkit.parse(stored)
    except TOMLKitError:
        old = tomlkit.document()
    for path, kind in secret_fields():
        for container, name, where in _locations(doc, path):
            value = container.get(name)
            if isinstance(value, str) and PLACEHOLDER in value:
                before = _value_at(old, where)
                container[name] = restore_value(kind, str(value), before, where=".".join(
                    str(w) for w in where))
    return doc.as_string()


def _locations(doc: Any, path: Path, where: tuple[Any, ...] = ()
               ) -> Iterator[tuple[Any, str, tuple[Any, ...]]]:
    """(container, field name, concrete location) for each place `path` matches in `doc`.

    A concrete location names list entries by ("#id", id) when they have one, else by index."""
    head, rest = path[0], path[1:]
    if not rest:
        if hasattr(doc, "get") and head in doc:
            yield doc, head, (*where, head)
        return
    if head == "*":
        if isinstance(doc, list):
            for index, entry in enumerate(doc):
                ident = entry.get("id") if hasattr(entry, "get") else None
                step = ("#id", str(ident)) if isinstance(ident, str) else index
                yield from _locations(entry, rest, (*where, step))
        elif hasattr(doc, "items"):
            for name, entry in doc.items():
                yield from _locations(entry, rest, (*where, name))
        return
    if hasattr(doc, "get") and head in doc:
        yield from _locations(doc[head], rest, (*where, head))


def _value_at(doc: Any, where: tuple[Any, ...]) -> str | None:
    node: Any = doc
    for step in where:
        if isinstance(step, tuple):  # ("#id", id): the list entry with that id
            node = next((e for e in node if hasattr(e, "get") and e.get("id") == step[1]), None) \
                if isinstance(node, list) else None
        elif isinstance(step, int):
            node = node[step] if isinstance(node, list) and step < len(node) else None
        else:
            node = node.get(step) if hasattr(node, "get") else None
        if node is None:
            return None
    return str(node) if isinstance(node, str) else None


def _dsn_spans(value: str) -> list[tuple[int, int]]:
    """Where the passwords of a DSN are, in order."""
    spans = sorted({m.span("pw") for pattern in _DSN_PASSWORDS for m in pattern.finditer(value)})
    return [span for i, span in enumerate(spans) if i == 0 or span[0] >= spans[i - 1][1]]


def _replace_passwords(value: str, replace: Callable[[int, str], str]) -> str:
    out, last = [], 0
    for index, (start, end) in enumerate(_dsn_spans(value)):
        out.append(value[last:start])
        out.append(replace(index, value[start:end]))
        last = end
    out.append(value[last:])
    return "".join(out)


def _no_stored(where: str) -> str:
    return (f"{where}: {PLACEHOLDER!r} stands for the stored secret, but there is none to keep "
            "here; write the value itself")
