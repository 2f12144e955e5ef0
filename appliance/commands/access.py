"""Which command lines a custom user may run: fnmatch globs over the space-joined argv."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence

from appliance.errors import InvalidInput


def parse_patterns(text: str) -> list[str]:
    """User.command_patterns: a JSON list of globs ('' means none allowed)."""
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"command patterns are not JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise InvalidInput("command patterns must be a JSON list of strings")
    return value


def argv_allowed(patterns: Sequence[str] | None, argv: Sequence[str]) -> bool:
    """True when `patterns` is None (unrestricted) or one glob matches the whole command line.

    Matching is case-sensitive (fnmatchcase), so `searchlog *` never admits `SEARCHLOG`, and a
    glob must match the whole line: `searchlog -- 1234*` admits only searches for that id.
    """
    if patterns is None:
        return True
    line = " ".join(argv)
    return any(fnmatch.fnmatchcase(line, p) for p in patterns)
