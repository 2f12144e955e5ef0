"""What every command is: a spec (name, usage, argv parser, body) and the terminal it writes to."""

from __future__ import annotations

import argparse
import dataclasses
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from appliance.errors import InvalidInput

if TYPE_CHECKING:
    from appliance.db.engine import Store
    from appliance.queue.spool import Spool


class CommandStopped(Exception):
    """Raised inside a command's body when it must end (stopped, interrupted, over a limit)."""


class Terminal(Protocol):
    """The command's side of its pseudo-terminal: output, input, and a stoppable sleep."""

    cols: int
    rows: int

    @property
    def stopped(self) -> bool: ...

    def write(self, data: str | bytes) -> None: ...

    def read(self, timeout: float) -> bytes | None: ...

    def sleep(self, seconds: float) -> None: ...


class DnsResolver(Protocol):
    """The part of dns.resolver.Resolver that dnslookup uses (tests inject a fake zone)."""

    def resolve(self, qname: str, rdtype: str, *, lifetime: float | None = None) -> Any: ...


class GraphSampler(Protocol):
    """Live values, once per second (appliance.stats.sampler provides it): a graph's line, or
    every counter by name (appliance.stats.legacy) for statd."""

    def __call__(
        self, graph: str, *, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> Iterator[str]: ...

    def counter_samples(
        self, *, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> Iterator[dict[str, float]]: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandContext:
    """The node's parts that commands read; absent parts make the commands needing them fail."""

    log_dir: Path
    spool: Spool | None = None
    store: Store | None = None
    resolver: DnsResolver | None = None
    sampler: GraphSampler | None = None
    clock: Callable[[], float] = time.time
    hostname: str = dataclasses.field(default_factory=socket.gethostname)

    def need(self, part: str) -> Any:
        value = getattr(self, part)
        if value is None:
            raise InvalidInput(f"this node has no {part} configured")
        return value


Body = Callable[[CommandContext, Any, Terminal], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandSpec:
    """One appliance command: `parse(argv[1:])` validates (InvalidInput), `run` does the work."""

    name: str
    usage: str
    description: str
    parse: Callable[[Sequence[str]], Any]
    run: Body
    # What the parsed arguments name, for users restricted to some messages: ("path", spool
    # path) or ("msgid", text). None: the command names no message.
    names: Callable[[Any], list[tuple[str, str]]] | None = None
    # It only reads the node's own data (log, counters, queue, spool): read-only users may run
    # it. Commands that reach out (DNS, remote servers) leave this False.
    reads_only: bool = False


class ArgvParser(argparse.ArgumentParser):
    """argparse that raises InvalidInput instead of printing and exiting the process."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False, exit_on_error=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise InvalidInput(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise InvalidInput(f"{self.prog}: {message or 'bad arguments'}")

    def parse_argv(self, argv: Sequence[str]) -> argparse.Namespace:
        try:
            return self.parse_args(list(argv))
        except argparse.ArgumentError as exc:
            raise InvalidInput(f"{self.prog}: {exc}") from exc


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def wait_or_quit(term: Terminal, seconds: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
    """Wait like term.sleep, but end the command when `q` is pushed (as `less` or `top` do)."""
    deadline = monotonic() + seconds
    while (left := deadline - monotonic()) > 0:
        data = term.read(left)
        if data is not None and b"q" in data.lower():
            raise CommandStopped("quit")
