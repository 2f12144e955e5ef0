"""Config text <-> validated Config; errors carry line and column."""

from __future__ import annotations

import tomllib

from pydantic import ValidationError

from appliance.config.schema import Config
from appliance.errors import InvalidInput


class ConfigError(InvalidInput):
    """Invalid config text; `problems` is a list of (line, column, message), 1-based."""

    def __init__(self, problems: list[tuple[int, int, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"line {ln}, column {col}: {msg}" for ln, col, msg in problems))


def parse(text: str) -> Config:
    """Parse and validate config text; raise ConfigError naming line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", 1) or 1
        col = getattr(exc, "colno", 1) or 1
        raise ConfigError([(line, col, str(exc).split(" (at line")[0])]) from exc
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_locate(text, err) for err in exc.errors()]) from exc


def _locate(text: str, err: dict) -> tuple[int, int, str]:  # type: ignore[type-arg]
    """Best effort: the line where the offending key (the innermost named one) is written."""
    loc = [p for p in err.get("loc", ()) if isinstance(p, str)]
    where = ".".join(str(p) for p in err.get("loc", ()))
    message = f"{where}: {err['msg']}" if where else err["msg"]
    for key in reversed(loc):
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.lstrip()
            if stripped.startswith(f"{key} ") or stripped.startswith(f"{key}=") or stripped.strip("[] ") == key:
                return number, len(line) - len(stripped) + 1, message
    return 1, 1, message
