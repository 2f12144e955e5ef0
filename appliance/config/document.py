"""Config text <-> validated Config; every problem carries a line, a column and an explanation."""

from __future__ import annotations

import tomllib
from typing import Any, NamedTuple

from pydantic import ValidationError

from appliance.config.positions import Positions
from appliance.config.schema import Config, reference_problems
from appliance.errors import InvalidInput


class Problem(NamedTuple):
    """One problem in a config text; line and column are 1-based."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


class ConfigError(InvalidInput):
    """Invalid config text; `problems` lists every Problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(str(p) for p in problems))


def parse(text: str) -> Config:
    """Parse and validate config text; raise ConfigError naming line and column."""
    problems, config = _check(text)
    if problems or config is None:
        raise ConfigError(problems)
    return config


def test(text: str) -> list[Problem]:
    """Every problem in `text` (empty when it is a valid configuration)."""
    return _check(text)[0]


test.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported


def _check(text: str) -> tuple[list[Problem], Config | None]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [_syntax_problem(text, exc)], None
    try:
        config = Config.model_validate(data, context={"defer_references": True})
    except ValidationError as exc:
        return _sorted([_locate(text, err["loc"], _explain(err)) for err in exc.errors()]), None
    problems = [_locate(text, loc, message) for loc, message in reference_problems(config)]
    return _sorted(problems), (None if problems else config)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line, p.column))


def _syntax_problem(text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    message = str(exc).split(" (at ")[0]
    line = getattr(exc, "lineno", None)
    column = getattr(exc, "colno", None)
    if line is None:  # Python 3.11's tomllib only puts the position in the message
        line, column = _position_from_message(str(exc), text)
    return Problem(line, column or 1, f"TOML syntax: {message}")


def _position_from_message(message: str, text: str) -> tuple[int, int]:
    tail = message.rpartition("(at ")[2].rstrip(")")
    if tail.startswith("line "):
        line, _, column = tail.removeprefix("line ").partition(", column ")
        if line.isdigit() and column.isdigit():
            return int(line), int(column)
    if tail == "end of document":
        lines = text.splitlines() or [""]
        return len(lines), len(lines[-1]) + 1
    return 1, 1


_PLAIN = {
    "extra_forbidden": "unknown key (not part of the configuration; check the spelling)",
    "missing": "required key is missing",
}


def _explain(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"])
    message = _PLAIN.get(err["type"], err["msg"])
    message = message.removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _locate(text: str, loc: tuple[str | int, ...], message: str) -> Problem:
    try:
        line, column = Positions(text).locate(loc)
    except Exception:  # tomllib accepted the text; tomlkit may be stricter in corner cases
        line, column = 1, 1
    return Problem(line, column, message)
