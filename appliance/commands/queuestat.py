"""`queuestat`: queue entries counted by state and transport.

`--restriction HQL` (repeatable) counts only the entries matching every one given: the API adds
a restricted user's own restriction this way (appliance.commands.scope), so such a user sees
the counts of its own entries only.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from appliance import hql
from appliance.commands.base import ArgvParser, CommandContext, CommandSpec, Terminal
from appliance.db.models import QueueEntry
from appliance.types import QueueState


def counts_by_state_and_transport(session: Session, *, where: ColumnElement[bool] | None = None
                                  ) -> dict[tuple[str, str], int]:
    """(state, transport) -> number of queue entries (those matching `where`, if given)."""
    stmt = select(QueueEntry.state, QueueEntry.transport, func.count()).group_by(
        QueueEntry.state, QueueEntry.transport
    )
    if where is not None:
        stmt = stmt.where(where)
    return {(state, transport): n for state, transport, n in session.execute(stmt)}


def render(counts: dict[tuple[str, str], int]) -> str:
    """A table: one row per transport, one column per state, and totals."""
    states = [s.value for s in QueueState]
    transports = sorted({t for _, t in counts})
    names = {t: t or "(default)" for t in transports}
    width = max([len("TRANSPORT"), len("total"), *map(len, names.values())])
    lines = ["TRANSPORT".ljust(width) + "".join(f"{s:>10}" for s in states) + f"{'TOTAL':>10}"]
    for t in transports:
        row = [counts.get((s, t), 0) for s in states]
        lines.append(names[t].ljust(width) + "".join(f"{n:>10}" for n in row) + f"{sum(row):>10}")
    totals = [sum(n for (s, _), n in counts.items() if s == state) for state in states]
    lines.append("total".ljust(width) + "".join(f"{n:>10}" for n in totals) + f"{sum(totals):>10}")
    return "\n".join(lines) + "\n"


def parse(argv: Sequence[str]) -> tuple[str, ...]:
    """The restrictions given (each checked now: a bad one is an argv error, nothing runs)."""
    p = ArgvParser("queuestat")
    p.add_argument("--restriction", action="append", default=[], metavar="HQL")
    restrictions = tuple(p.parse_argv(argv).restriction)
    for text in restrictions:
        hql.compile_filter(text)
    return restrictions


def run(ctx: CommandContext, args: tuple[str, ...], term: Terminal) -> None:
    where = and_(*(hql.compile_filter(text) for text in args)) if args else None
    with ctx.need("store").transaction(read_only=True) as session:
        counts = counts_by_state_and_transport(session, where=where)
    term.write(render(counts))


SPEC = CommandSpec(
    name="queuestat",
    usage="queuestat [--restriction HQL]...",
    description="Queue entries by transport and state (ACTIVE, DEFER, HOLD)",
    parse=parse,
    run=run,
    reads_only=True,
)
