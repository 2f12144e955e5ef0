"""The HQL compiler: which columns and SQL shapes each field produces, with bound values only."""

from __future__ import annotations

import pytest
from sqlalchemy import ColumnElement, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import True_

from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import FilterError
from appliance.hql import compile_filter, restrict
from appliance.hql.compiler import domain_of_pattern, fts_query, like_pattern


def sql(text: str, *, history: bool = False, dialect: str = "sqlite") -> tuple[str, dict[str, object]]:
    model = HistoryEntry if history else QueueEntry
    stmt = select(model.id).where(compile_filter(text, history=history))
    d = sqlite.dialect() if dialect == "sqlite" else postgresql.dialect()
    compiled = stmt.compile(dialect=d)
    where = str(compiled).split("WHERE", 1)[1].strip()
    return " ".join(where.split()), dict(compiled.params)


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_is_true(text: str) -> None:
    assert isinstance(compile_filter(text), True_)


def test_address_equality_is_case_insensitive_via_lower() -> None:
    where, params = sql("from=Alice@Example.COM")
    assert where == "lower(queue.sender) = lower(?)"
    assert list(params.values()) == ["Alice@Example.COM"]
    assert sql("to=x@y")[0] == "lower(queue.rcpt) = lower(?)"


@pytest.mark.parametrize("value", ["%@Example.COM", "@Example.COM", "%@[Example.COM]"])
@pytest.mark.parametrize(("field", "column"), [("from", "sender_domain"), ("to", "rcpt_domain")])
def test_domain_search_uses_the_domain_column(field: str, column: str, value: str) -> None:
    where, params = sql(f"{field}~{value}")
    assert where == f"queue.{column} = ?"
    assert list(params.values()) == ["example.com"]


@pytest.mark.parametrize("value", ["%@%.example.com", "a%@example.com", "%@", "%@a@b", "x@example.com"])
def test_other_address_patterns_are_like(value: str) -> None:
    where, _ = sql(f"to~{value}")
    assert where == "(queue.rcpt LIKE ? ESCAPE '\\') = 1"


def test_like_patterns() -> None:
    assert like_pattern("abc") == "%abc%"
    assert like_pattern("ab%") == "ab%"
    assert like_pattern("a_b") == "%a\\_b%"
    assert like_pattern("a\\b%") == "a\\\\b%"


def test_domain_of_pattern() -> None:
    assert domain_of_pattern("%@Ex.com") == "ex.com"
    assert domain_of_pattern("@ex.com") == "ex.com"
    assert domain_of_pattern("%ex.com") is None
    assert domain_of_pattern("%@") is None
    assert domain_of_pattern("%@[]") is None


def test_contains_escapes_underscore() -> None:
    where, params = sql("subject~50_off", history=True)
    assert where == "(history.subject LIKE ? ESCAPE '\\') = 1"
    assert list(params.values()) == ["%50\\_off%"]


def test_queue_subject_contains_reads_the_text_index() -> None:
    where, params = sql("subject~50_off")
    assert where == (
        "(queue.id IN (SELECT rowid FROM queue_subject_fts WHERE queue_subject_fts MATCH ?)"
        " AND (queue.subject LIKE ? ESCAPE '\\'))")
    assert sorted(map(str, params.values())) == ['"50_" AND "0_o" AND "_of" AND "off"', "%50\\_off%"]
    # No literal run of three characters: trigrams cannot help, LIKE alone decides.
    where, params = sql("subject~50%of")
    assert where == "(queue.subject LIKE ? ESCAPE '\\')"
    assert list(params.values()) == ["50%of"]
    # PostgreSQL: the ids ILIKE finds through the pg_trgm index, as one array; no FTS query.
    where, params = sql("not subject~Hello", dialect="postgresql")
    assert where == (
        "NOT (queue.id = ANY (ARRAY(SELECT subject_match.id FROM queue AS subject_match"
        " WHERE (subject_match.subject ILIKE %(param_1)s::VARCHAR ESCAPE '\\'))))")
    assert params == {"param_1": "%Hello%"}
    where, params = sql("subject~He", dialect="postgresql")
    assert where == "(queue.subject ILIKE %(param_1)s::VARCHAR ESCAPE '\\')"


@pytest.mark.parametrize(("value", "query"), [
    ("hello", '"hel" AND "ell" AND "llo"'),
    ("50%of", None),
    ("50%off", '"off"'),
    ('%ab"c%x%yz%%wxyz', '"ab""" AND "b""c" AND "wxy" AND "xyz"'),
    ("aaaaaa%aaa", '"aaa"'),
    ("Invoice 50_off", '"Inv" AND "nvo" AND "voi" AND "oic" AND "ice" AND "ce " AND "e 5" AND'
                       ' " 50" AND "50_" AND "0_o" AND "_of" AND "off"'),
])
def test_fts_query_takes_the_trigrams_of_the_literal_runs(value: str, query: str | None) -> None:
    assert fts_query(value) == query


def test_fts_query_bounds_the_trigrams_of_a_long_run() -> None:
    query = fts_query("".join(chr(0x4E00 + i) for i in range(200)))
    assert query is not None and query.count(" AND ") == 15
    assert query.startswith('"\u4e00\u4e01\u4e02"') and query.endswith('"\u4ec5\u4ec6\u4ec7"')


def test_postgres_uses_ilike() -> None:
    where, params = sql("subject~Hi%", history=True, dialect="postgresql")
    assert where == "(history.subject ILIKE %(param_1)s::VARCHAR ESCAPE '\\')"
    assert params == {"param_1": "Hi%"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("queueid=5", "queue.id = ?"),
        ("actionid>=5", "queue.actionid >= ?"),
        ("jobid=j1", "queue.jobid = ?"),
        ("queue=hold", "queue.state = ?"),
        ("action=quarantine", "queue.action = ?"),
        ("quarantine=spam", "queue.quarantine = ?"),
        ("server=inbound", "queue.listener = ?"),
        ("transport=mx", "queue.transport = ?"),
        ("ip=192.0.2.1", "queue.fromserver = ?"),
        ("helo=mx.example", "queue.helo = ?"),
        ("sasl=bob", "queue.sasl = ?"),
        ("subject=hi", "queue.subject = ?"),
        ("error~greylist", "(queue.error LIKE ? ESCAPE '\\') = 1"),
        ("time>1700000000", "queue.ts0 > ?"),
        ("size<1000", "queue.size < ?"),
        ("retries<=3", "queue.retries <= ?"),
        ("messageid=abc", "queue.msgid = ?"),
        ("messageid=abc:12", "queue.msgid = ? AND queue.id = ?"),
        ("messageid~abc", "(queue.msgid LIKE ? ESCAPE '\\') = 1"),
    ],
)
def test_every_queue_field(text: str, expected: str) -> None:
    assert sql(text)[0] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("queueid=5", "history.queueid = ?"),
        ("historyid=7", "history.id = ?"),
        ("messageid=abc:12", "history.msgid = ? AND history.queueid = ?"),
        ("action=deliver", "history.action = ?"),
    ],
)
def test_history_fields(text: str, expected: str) -> None:
    assert sql(text, history=True)[0] == expected


def test_queue_field_on_history_is_refused() -> None:
    with pytest.raises(FilterError) as e:
        compile_filter("from=x queue=HOLD", history=True)
    assert (e.value.position, e.value.problem) == (7, "field 'queue' does not apply to history")


def test_historyid_on_queue_is_refused() -> None:
    with pytest.raises(FilterError) as e:
        compile_filter("not historyid=1")
    assert (e.value.position, e.value.problem) == (4, "field 'historyid' applies to history only")


def test_metadata_is_one_uncorrelated_lookup() -> None:
    where, params = sql("metadata.score=5")
    assert where == (
        "queue.id IN (SELECT queue_metadata.entry_id FROM queue_metadata"
        " WHERE queue_metadata.\"key\" = ? AND queue_metadata.value = ?)"
    )
    assert sorted(map(str, params.values())) == ["5", "score"]
    where, _ = sql("not metadata.score~5", history=True)
    assert where.startswith("(history.id NOT IN (SELECT history_metadata.entry_id FROM history_metadata WHERE")


def test_ored_metadata_terms_share_one_subquery() -> None:
    terms = " or ".join(f"metadata.k{i % 3}={i}" for i in range(300))
    where, params = sql(f"{terms} or metadata.k1~x% or size=7", dialect="postgresql")
    assert where.count("SELECT") == 1, where
    assert where.count("IN (") == 4, where  # queue.id IN, and one value IN per key
    assert "size = " in where
    # Three keys, three expanding value lists holding the 300 values, the pattern, the size.
    assert len(params) == 3 + 3 + 2
    assert sum(len(v) for v in params.values() if isinstance(v, list)) == 300
    # Terms AND'ed with the group keep their own meaning.
    where, _ = sql("(metadata.a=1 or metadata.b=2) metadata.c=3")
    assert where.count("SELECT") == 2, where


def test_boolean_structure() -> None:
    where, _ = sql("size=1 or size=2 size=3 && not size=4")
    assert where == "(queue.size = ? OR queue.size = ? AND queue.size = ?) AND queue.size != ?"


def test_result_is_a_column_element() -> None:
    assert isinstance(compile_filter("size=1"), ColumnElement)


@pytest.mark.parametrize(
    ("restriction", "filter_", "expected"),
    [
        ("", "", ""),
        ("to~@a.com", "", "to~@a.com"),
        ("", "size>1", "size>1"),
        ("to~@a.com", "size>1 or size<0", "to~@a.com && size>1 or size<0"),
        ("  ", "size>1", "size>1"),
    ],
)
def test_restrict_joins(restriction: str, filter_: str, expected: str) -> None:
    assert restrict(restriction, filter_) == expected


def test_restricted_filter_cannot_widen_the_restriction() -> None:
    where, _ = sql(restrict("to~%@a.com", "size>1 or size<0"))
    assert where == "queue.rcpt_domain = ? AND (queue.size > ? OR queue.size < ?)"


@pytest.mark.parametrize("bad", ['x) or (size>0', 'size>0 "', "size>0 or (", ") or size>0"])
def test_restrict_refuses_filters_that_do_not_parse_alone(bad: str) -> None:
    with pytest.raises(FilterError):
        restrict("to~%@a.com", bad)
