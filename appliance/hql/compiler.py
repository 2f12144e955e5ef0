"""HQL AST to a SQLAlchemy condition on the queue or history table; values only as bound parameters."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, ColumnElement, and_, func, literal, not_, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from appliance.db.models import HistoryEntry, HistoryMetadata, QueueEntry, QueueMetadata
from appliance.db.models_hql import SUBJECT_FTS
from appliance.db.models_trash import TrashEntry, TrashMetadata
from appliance.errors import FilterError
from appliance.hql import fields
from appliance.hql.ast import And, Condition, Node, Not, Or
from appliance.hql.fields import Type
from appliance.hql.parser import parse

LIKE_ESCAPE = "\\"
_GROUP = 32  # terms per parenthesized group of a long and/or chain (_balanced)
_TRIGRAMS = 16  # trigrams per literal run that the FTS5 query asks for (fts_query)

# HQL field -> column attribute name shared by QueueEntry and HistoryEntry.
_COLUMNS = {
    "messageid": "msgid", "actionid": "actionid", "jobid": "jobid", "queue": "state",
    "action": "action", "quarantine": "quarantine", "server": "listener",
    "transport": "transport", "from": "sender", "to": "rcpt", "ip": "fromserver",
    "helo": "helo", "sasl": "sasl", "subject": "subject", "error": "error", "time": "ts0",
    "size": "size", "retries": "retries", "deleted": "deleted", "deletedby": "deletedby",
}
_DOMAIN_COLUMNS = {"from": "sender_domain", "to": "rcpt_domain"}


class ci_like(FunctionElement[bool]):  # noqa: N801 - named like SQL functions
    """Case-insensitive `column LIKE pattern ESCAPE '\\'`: ILIKE on PostgreSQL, plain LIKE on
    SQLite (already case-insensitive for ASCII, the same as its lower(), and cheaper per row)."""

    type = Boolean()
    name = "ci_like"
    inherit_cache = True


@compiles(ci_like)
def _ci_like_default(element: ci_like, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = element.clauses
    return f"({compiler.process(column.ilike(pattern, escape=LIKE_ESCAPE), **kw)})"


@compiles(ci_like, "sqlite")
def _ci_like_sqlite(element: ci_like, compiler: SQLCompiler, **kw: Any) -> str:
    column, pattern = element.clauses
    return f"({compiler.process(column.like(pattern, escape=LIKE_ESCAPE), **kw)})"


class subject_like(FunctionElement[bool]):  # noqa: N801 - named like SQL functions
    """`queue.subject~value` through the store's text index, with ci_like's exact meaning.

    PostgreSQL: ILIKE, which the pg_trgm GIN index ix_queue_subject_trgm serves (for a run
    of 3+ characters, as an array of matching ids computed once). SQLite: the
    FTS5 trigram table narrows to entries holding every trigram of the literal runs (a
    superset: it folds case more widely than LIKE), then LIKE decides, as without the index.
    Clauses: queue.id, queue.subject, the LIKE pattern, the FTS5 query (None: no run is long
    enough for trigrams, so plain LIKE).
    """

    type = Boolean()
    name = "subject_like"
    inherit_cache = True
    # Rendered bare in WHERE, not as `(...) = 1`: SQLite plans `id IN (...)` only at the top.
    _is_implicitly_boolean = True


@compiles(subject_like)
def _subject_like_default(element: subject_like, compiler: SQLCompiler, **kw: Any) -> str:
    id_, column, pattern, query = element.clauses
    if query.value is None:
        return compiler.process(ci_like(column, pattern), **kw)
    # The matching ids first, as one array (an InitPlan the trigram index answers), then the
    # entries by primary key. Left as a plain condition, the planner walks ix_queue_ts0 for
    # `ORDER BY ts0 LIMIT 100` and tests every row it meets (measured on 1M entries: 38,000
    # rows read for 100 hits of a word in 0.25% of the subjects, 330-600 ms).
    match = id_.table.alias("subject_match")
    ids = select(match.c.id).where(ci_like(match.c.subject, pattern)).scalar_subquery()
    return f"({compiler.process(id_, **kw)} = ANY (ARRAY{compiler.process(ids, **kw)}))"


@compiles(subject_like, "sqlite")
def _subject_like_sqlite(element: subject_like, compiler: SQLCompiler, **kw: Any) -> str:
    id_, column, pattern, query = element.clauses
    like = compiler.process(ci_like(column, pattern), **kw)
    if query.value is None:
        return like
    return (f"({compiler.process(id_, **kw)} IN (SELECT rowid FROM {SUBJECT_FTS} WHERE "
            f"{SUBJECT_FTS} MATCH {compiler.process(query, **kw)}) AND {like})")


class _group(FunctionElement[bool]):  # noqa: N801 - named like SQL functions
    """Parentheses that stay: or_() and and_() flatten a nested chain of their own kind."""

    type = Boolean()
    name = "group"
    inherit_cache = True
    _is_implicitly_boolean = True


@compiles(_group)
def _render_group(element: _group, compiler: SQLCompiler, **kw: Any) -> str:
    (inner,) = element.clauses
    return f"({compiler.process(inner, **kw)})"


def fts_query(value: str) -> str | None:
    """The FTS5 query for an HQL `~` value: the trigrams of each literal run between `%`
    wildcards, AND'ed (the index keeps no positions, so it answers which entries hold all of
    them; LIKE then decides); None when no run is 3 characters long. A long run contributes
    at most _TRIGRAMS of its trigrams, spread over it: still a superset, and cheap to read."""
    grams: list[str] = []
    for run in value.split("%"):
        of_run = list(dict.fromkeys(run[i : i + 3] for i in range(len(run) - 2)))
        if len(of_run) > _TRIGRAMS:
            step = len(of_run) / _TRIGRAMS
            of_run = [of_run[int(k * step)] for k in range(_TRIGRAMS - 1)] + [of_run[-1]]
        grams += [g for g in of_run if g not in grams]
    if not grams:
        return None
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)


def _like(column: Any, value: str) -> ColumnElement[bool]:
    return ci_like(column, literal(like_pattern(value)))


def compile_filter(text: str, *, history: bool = False, trash: bool = False) -> ColumnElement[bool]:
    """The condition `text` means on QueueEntry (HistoryEntry with `history`, TrashEntry with
    `trash`: the queue's fields plus `deleted` and `deletedby`); true() if empty."""
    node = parse(text)
    if node is None:
        return true()
    return _Compiler(history, trash=trash).node(node)


def like_pattern(value: str) -> str:
    """An HQL `~` value as a LIKE pattern: `%` stays a wildcard, anything else is literal,
    and a value without `%` means "contains"."""
    escaped = value.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("_", LIKE_ESCAPE + "_")
    return escaped if "%" in value else f"%{escaped}%"


def domain_of_pattern(value: str) -> str | None:
    """The domain of `%@example.com` or `@example.com` (a whole-domain search), else None."""
    rest = value[1:] if value.startswith("%@") else value
    if not rest.startswith("@"):
        return None
    domain = rest[1:]
    if not domain or "%" in domain or "@" in domain:
        return None
    # Stored domains are lower-case with any address-literal brackets removed (types.domain_of).
    return domain.lower().strip("[]") or None


class _Compiler:
    def __init__(self, history: bool, *, trash: bool = False) -> None:
        self.history = history and not trash
        self.trash = trash
        self.model: Any = TrashEntry if trash else HistoryEntry if history else QueueEntry
        self.meta: Any = TrashMetadata if trash else HistoryMetadata if history else QueueMetadata

    def node(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, Condition):
            return self.condition(node)
        if isinstance(node, Not):
            return not_(self.node(node.operand))
        if isinstance(node, And):
            return _balanced(and_, [self.node(n) for n in node.operands])
        metadata = [n for n in node.operands if isinstance(n, Condition) and n.key is not None]
        if len(metadata) < 2:
            return _balanced(or_, [self.node(n) for n in node.operands])
        # One lookup for all OR'ed metadata terms: a subquery per term costs entries x terms.
        rest = [self.node(n) for n in node.operands if not _is_metadata(n)]
        return _balanced(or_, [self._metadata(metadata), *rest])

    def _queue_id_column(self) -> Any:
        return self.model.queueid if self.history else self.model.id

    def condition(self, c: Condition) -> ColumnElement[bool]:
        if c.key is not None:
            return self._metadata([c])
        field = fields.FIELDS[c.field]
        if field.queue_only and self.history:
            raise FilterError(c.pos, f"field '{c.field}' does not apply to history")
        if field.history_only and not self.history:
            raise FilterError(c.pos, f"field '{c.field}' applies to history only")
        if field.trash_only and not self.trash:
            raise FilterError(c.pos, f"field '{c.field}' applies to the trash only")
        if c.field == "queueid":
            return _compare(self._queue_id_column(), c.op, c.value)
        if c.field == "historyid":
            return _compare(self.model.id, c.op, c.value)
        column = getattr(self.model, _COLUMNS[c.field])
        if field.type is Type.MESSAGEID and isinstance(c.value, tuple):
            msgid, qid = c.value
            return and_(column == msgid, self._queue_id_column() == qid)
        if field.type is Type.ADDRESS:
            return self._address(c, column)
        if c.field == "subject" and c.op == "~" and self.model is QueueEntry:
            value = str(c.value)
            return subject_like(self.model.id, column, literal(like_pattern(value)),
                                literal(fts_query(value)))
        return _compare(column, c.op, c.value)

    def _address(self, c: Condition, column: Any) -> ColumnElement[bool]:
        value = str(c.value)
        if c.op == "=":
            # Matches the expression indexes ix_*_sender_lc / ix_*_rcpt_lc.
            return func.lower(column) == func.lower(value)
        domain = domain_of_pattern(value)
        if domain is not None:
            return getattr(self.model, _DOMAIN_COLUMNS[c.field]) == domain
        return _like(column, value)

    def _metadata(self, conditions: list[Condition]) -> ColumnElement[bool]:
        """Entries with a metadata row matching any of `conditions`, as ONE uncorrelated
        `id IN (SELECT entry_id ...)`: the store runs the subquery once, through the (key,
        value) index for `=`, instead of once per entry and term."""
        by_key: dict[str, tuple[list[str], list[ColumnElement[bool]]]] = {}
        for c in conditions:
            assert c.key is not None
            equal, like = by_key.setdefault(c.key, ([], []))
            if c.op == "=":
                equal.append(str(c.value))
            else:
                like.append(_like(self.meta.value, str(c.value)))
        branches = []
        for key, (equal, like) in by_key.items():
            values = [self.meta.value == equal[0]] if len(equal) == 1 else (
                [self.meta.value.in_(equal)] if equal else [])
            branches.append(and_(self.meta.key == key, _balanced(or_, [*values, *like])))
        lookup: ColumnElement[bool] = self.model.id.in_(
            select(self.meta.entry_id).where(_balanced(or_, branches)))
        return lookup


def _balanced(op: Any, parts: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """`a OR b OR ...` (or AND) as a tree of parenthesized groups of at most _GROUP terms.

    SQL parses a flat chain as a left-deep tree, one level per term, and SQLite refuses an
    expression deeper than 1,000 (inside a subquery, a few hundred terms already): grouped,
    the depth grows with the logarithm of the number of terms. The meaning is the same.
    """
    if len(parts) <= _GROUP:
        combined: ColumnElement[bool] = op(*parts)
        return combined
    size = -(-len(parts) // _GROUP)
    groups = [_balanced(op, parts[i : i + size]) for i in range(0, len(parts), size)]
    return op(*[_group(g) for g in groups])  # type: ignore[no-any-return]


def _is_metadata(node: Node) -> bool:
    return isinstance(node, Condition) and node.key is not None


def _compare(column: Any, op: str, value: object) -> ColumnElement[bool]:
    if op == "~":
        return _like(column, str(value))
    if op == "=":
        return column == value  # type: ignore[no-any-return]
    if op == ">":
        return column > value  # type: ignore[no-any-return]
    if op == ">=":
        return column >= value  # type: ignore[no-any-return]
    if op == "<":
        return column < value  # type: ignore[no-any-return]
    return column <= value  # type: ignore[no-any-return]
