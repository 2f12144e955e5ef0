"""The catalog of appliance commands: lookup by name and argv validation before anything runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from appliance.commands.base import CommandSpec
from appliance.errors import InvalidInput, NotFound

# A command line is small; anything bigger is a mistake or an attack.
MAX_ARGS = 64
MAX_ARG_BYTES = 4096


class Catalog:
    """Commands by name, in the order they were given (commandList shows that order)."""

    def __init__(self, specs: Iterable[CommandSpec]) -> None:
        self._specs: dict[str, CommandSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"command {spec.name!r} registered twice")
            self._specs[spec.name] = spec

    def specs(self) -> list[CommandSpec]:
        return list(self._specs.values())

    def get(self, name: str) -> CommandSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise NotFound(f"unknown command {name!r}") from None

    def parse(self, argv: Sequence[str]) -> tuple[CommandSpec, Any]:
        """The command argv[0] names and its validated arguments, or InvalidInput/NotFound."""
        check_argv(argv)
        spec = self.get(argv[0])
        return spec, spec.parse(argv[1:])


def check_argv(argv: Sequence[str]) -> None:
    if not argv:
        raise InvalidInput("argv is empty: name a command")
    if len(argv) > MAX_ARGS:
        raise InvalidInput(f"argv has {len(argv)} items; at most {MAX_ARGS}")
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            raise InvalidInput(f"argv[{i}] is not text")
        if "\x00" in arg:
            raise InvalidInput(f"argv[{i}] contains a NUL byte")
        if len(arg.encode()) > MAX_ARG_BYTES:
            raise InvalidInput(f"argv[{i}] is longer than {MAX_ARG_BYTES} bytes")


def default_catalog() -> Catalog:
    """Every built-in command."""
    from appliance.commands import dnslookup, previewmessage, queuestat, searchlog, smtpping, statd

    return Catalog(
        [searchlog.SPEC, previewmessage.SPEC, statd.SPEC, queuestat.SPEC, dnslookup.SPEC, smtpping.SPEC]
    )
