"""R4: property-based fuzzing of HQL — only clean FilterErrors, and values only as bound parameters."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from appliance.db.models import HistoryEntry, QueueEntry
from appliance.errors import FilterError
from appliance.hql import compile_filter, restrict
from appliance.hql.fields import FIELDS, Type

DIALECTS = (sqlite.dialect(), postgresql.dialect())
_FRAGMENTS = [
    "(", ")", "&&", "&", "=", "~", ">", ">=", "<", "<=", '"', '\\"', "\\", " ", "and", "or",
    "not", "%", "_", "@", ":", ".", "metadata.", "metadata.k", "-", "1", "1.5", "99999999999999999999",
    *FIELDS, "hold", "DEFER", "x@y.z", "%@y.z", "\x00", "é", "\n",
]
hql_like_text = st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join)


def _compile_everywhere(text: str, *, history: bool) -> None:
    model = HistoryEntry if history else QueueEntry
    stmt = select(model.id).where(compile_filter(text, history=history))
    for dialect in DIALECTS:
        stmt.compile(dialect=dialect)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=200), hql_like_text), history=st.booleans())
def test_arbitrary_text_raises_only_filter_errors(text: str, history: bool) -> None:
    try:
        _compile_everywhere(text, history=history)
    except FilterError as e:
        assert 0 <= e.position <= len(text)
        assert e.problem and str(e).startswith(f"invalid filter at {e.position}: ")


# A marker that cannot occur in SQL text, so its presence there would mean an inlined value.
MARK = "qzx"
_value_chars = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
marked_text = _value_chars.map(lambda s: MARK + s)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def condition(draw: st.DrawFn, *, history: bool) -> tuple[str, list[str]]:
    """Text of one valid condition and the marked values it carries."""
    names = [n for n, f in FIELDS.items() if not (f.queue_only and history)
             and not (f.history_only and not history) and not f.trash_only]
    name = draw(st.sampled_from([*names, "metadata"]))
    if name == "metadata":
        key = draw(marked_text.filter(lambda k: len(k) <= 128))
        value = draw(marked_text)
        op = draw(st.sampled_from(["=", "~"]))
        return f"metadata.{_bare_key(key)}{op}{_quote(value)}", [value]
    field = FIELDS[name]
    op = draw(st.sampled_from(sorted(field.ops)))
    if field.type is Type.INTEGER:
        n = draw(st.integers(min_value=987_000_000, max_value=987_999_999))
        return f"{name}{op}{n}", [str(n)]
    if field.type is Type.SECONDS:
        n = draw(st.integers(min_value=987_000_000, max_value=987_999_999))
        return f"{name}{op}{n}.5", [f"{n}.5"]
    if field.type is Type.STATE:
        return f"{name}{op}{draw(st.sampled_from(['ACTIVE', 'defer', 'Hold']))}", []
    if field.type is Type.ACTION and op == "=":
        action = draw(st.sampled_from(["DELIVER", "bounce", '""']))
        return f"{name}{op}{action}", []
    value = draw(marked_text)
    if field.type is Type.MESSAGEID and op == "=":
        value = value.replace(":", "")  # a ':' introduces the queue id
    if field.type is Type.MESSAGEID and op == "=" and draw(st.booleans()):
        n = draw(st.integers(min_value=987_000_000, max_value=987_999_999))
        return f"{name}{op}{_quote(value + ':' + str(n))}", [value, str(n)]
    return f"{name}{op}{_quote(value)}", [value]


def _bare_key(key: str) -> str:
    # Metadata keys are bare words: keep only characters a bare word may hold.
    return "".join(c for c in key if not c.isspace() and c not in '()"=~<>&') or MARK


@st.composite
def expression(draw: st.DrawFn, *, history: bool, depth: int = 0) -> tuple[str, list[str]]:
    if depth >= 3 or draw(st.booleans()):
        return draw(condition(history=history))
    left, lv = draw(expression(history=history, depth=depth + 1))
    right, rv = draw(expression(history=history, depth=depth + 1))
    joiner = draw(st.sampled_from([" and ", " or ", " ", " && ", "&&"]))
    text = f"{left}{joiner}{right}"
    if draw(st.booleans()):
        text = f"({text})"
    if draw(st.booleans()):
        text = f"not {text}" if text.startswith("(") else f"not ({text})"
    return text, lv + rv


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), history=st.booleans())
def test_generated_valid_filters_compile_with_bound_values_only(data: st.DataObject, history: bool) -> None:
    text, values = data.draw(expression(history=history))
    model = HistoryEntry if history else QueueEntry
    stmt = select(model.id).where(compile_filter(text, history=history))
    for dialect in DIALECTS:
        sql_text = str(stmt.compile(dialect=dialect))
        assert MARK not in sql_text
        for value in values:
            assert value not in sql_text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(restriction=st.data(), history=st.booleans())
def test_restriction_always_holds(restriction: st.DataObject, history: bool) -> None:
    """A restricted filter is the restriction AND the filter: never wider than the restriction."""
    r, _ = restriction.draw(expression(history=history))
    f, _ = restriction.draw(expression(history=history))
    joined = compile_filter(restrict(r, f), history=history)
    model = HistoryEntry if history else QueueEntry
    expected = select(model.id).where(compile_filter(r, history=history), compile_filter(f, history=history))
    got = select(model.id).where(joined)
    assert str(got.compile(dialect=DIALECTS[0])) == str(expected.compile(dialect=DIALECTS[0]))
