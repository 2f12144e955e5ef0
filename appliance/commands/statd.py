"""`statd -g GRAPH`: one line of live values per second from the statistics sampler, until stopped."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence

from appliance.commands.base import ArgvParser, CommandContext, CommandSpec, Terminal, wait_or_quit

_GRAPH = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")


@dataclasses.dataclass(frozen=True)
class Args:
    graph: str


def parse(argv: Sequence[str]) -> Args:
    p = ArgvParser("statd")
    p.add_argument("-g", dest="graph", required=True, metavar="GRAPH")
    ns = p.parse_argv(argv)
    if not _GRAPH.match(ns.graph):
        p.error(f"not a graph name: {ns.graph!r}")
    return Args(graph=ns.graph)


def run(ctx: CommandContext, args: Args, term: Terminal) -> None:
    sampler = ctx.need("sampler")
    # The sampler paces itself with our sleep, so a stop or a pushed `q` ends it between lines.
    sleep = functools.partial(wait_or_quit, term)
    for line in sampler(args.graph, clock=ctx.clock, sleep=sleep):
        term.write(line.rstrip("\n") + "\n")


SPEC = CommandSpec(
    name="statd",
    usage="statd -g GRAPH",
    description="Live values of GRAPH, one line per second, until stopped (push q to end)",
    parse=parse,
    run=run,
)
