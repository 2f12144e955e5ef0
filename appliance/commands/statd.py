"""`statd -l` (every counter and graph source as KEY=VALUE) and `statd -g NAME` (streamed, the
same lines once per second until stopped), in the old statd's line format."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence

from appliance.commands.base import ArgvParser, CommandContext, CommandSpec, Terminal, wait_or_quit
from appliance.errors import NotFound
from appliance.stats.legacy import format_value, select_names

_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,200}$")


@dataclasses.dataclass(frozen=True)
class Args:
    name: str | None  # None: -l


def parse(argv: Sequence[str]) -> Args:
    p = ArgvParser("statd")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("-l", dest="list", action="store_true")
    mode.add_argument("-g", dest="name", metavar="NAME")
    ns = p.parse_argv(argv)
    if ns.name is not None and not _NAME.match(ns.name):
        p.error(f"not a counter or graph name: {ns.name!r}")
    return Args(name=ns.name)


def run(ctx: CommandContext, args: Args, term: Terminal) -> None:
    sampler = ctx.need("sampler")
    # The sampler paces itself with our sleep, so a stop or a pushed `q` ends it between samples.
    sleep = functools.partial(wait_or_quit, term)
    for values in sampler.counter_samples(clock=ctx.clock, sleep=sleep):
        if args.name is None:  # -l: one sample of everything, then the command ends
            term.write("".join(f"{k}={format_value(v)}\n" for k, v in sorted(values.items())))
            return
        shown = select_names(values, args.name)
        if not shown:
            raise NotFound(f"no counter or graph {args.name!r} (statd -l lists them)")
        # One KEY=VALUE line per value and an empty line after each sample.
        term.write("".join(f"{k}={format_value(v)}\n" for k, v in shown) + "\n")


SPEC = CommandSpec(
    name="statd",
    usage="statd -l | statd -g NAME",
    description="-l: every counter and graph source as KEY=VALUE; -g NAME: those of NAME "
                "once per second until stopped (push q to end)",
    parse=parse,
    run=run,
    reads_only=True,
)
