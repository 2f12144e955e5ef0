"""The HQL parser: precedence, implicit and, `&&`, not, parentheses, fields, values and errors."""

from __future__ import annotations

import pytest

from appliance.errors import FilterError
from appliance.hql.ast import And, Condition, Node, Not, Or
from appliance.hql.fields import ALIASES, FIELDS
from appliance.hql.parser import MAX_CONDITIONS, MAX_DEPTH, MAX_LENGTH, parse


def shape(node: Node | None) -> object:
    """A compact form: conditions as 'field op value', operators as tuples."""
    if node is None:
        return None
    if isinstance(node, Condition):
        name = f"metadata.{node.key}" if node.key is not None else node.field
        return f"{name}{node.op}{node.value}"
    if isinstance(node, Not):
        return ("not", shape(node.operand))
    tag = "and" if isinstance(node, And) else "or"
    return (tag, *[shape(n) for n in node.operands])


def errors(text: str) -> tuple[int, str]:
    with pytest.raises(FilterError) as e:
        parse(text)
    return e.value.position, e.value.problem


@pytest.mark.parametrize("text", ["", " ", "\t\n  "])
def test_empty_is_none(text: str) -> None:
    assert parse(text) is None


def test_single_condition() -> None:
    node = parse("from=a@b.c")
    assert node == Condition("from", "=", "a@b.c", 0, 5)


def test_and_binds_tighter_than_or() -> None:
    assert shape(parse("size=1 or size=2 and size=3")) == ("or", "size=1", ("and", "size=2", "size=3"))
    assert shape(parse("size=1 and size=2 or size=3")) == ("or", ("and", "size=1", "size=2"), "size=3")


def test_adjacency_is_implicit_and() -> None:
    assert shape(parse("size=1 size=2 or size=3")) == ("or", ("and", "size=1", "size=2"), "size=3")
    assert shape(parse("size=1 size=2")) == shape(parse("size=1 and size=2"))


def test_join_has_lowest_precedence() -> None:
    # API.md: `A or B && C` means `(A or B) and C`.
    assert shape(parse("size=1 or size=2 && size=3")) == ("and", ("or", "size=1", "size=2"), "size=3")
    assert shape(parse("size=1 && size=2 or size=3")) == ("and", "size=1", ("or", "size=2", "size=3"))
    assert shape(parse("size=1&&size=2&&size=3")) == ("and", "size=1", "size=2", "size=3")


def test_parentheses_group() -> None:
    assert shape(parse("(size=1 or size=2) size=3")) == ("and", ("or", "size=1", "size=2"), "size=3")
    assert shape(parse("((size=1))")) == "size=1"
    assert shape(parse("(size=1 && size=2) or size=3")) == ("or", ("and", "size=1", "size=2"), "size=3")


def test_not_binds_to_one_factor() -> None:
    assert shape(parse("not size=1 size=2")) == ("and", ("not", "size=1"), "size=2")
    assert shape(parse("not (size=1 or size=2)")) == ("not", ("or", "size=1", "size=2"))
    assert shape(parse("not not size=1")) == ("not", ("not", "size=1"))
    assert shape(parse("size=1 or not size=2")) == ("or", "size=1", ("not", "size=2"))


def test_keywords_are_case_insensitive() -> None:
    assert shape(parse("NOT size=1 AND size=2 Or size=3")) == shape(parse("not size=1 and size=2 or size=3"))


def test_keywords_as_values() -> None:
    assert shape(parse("subject=and helo=or sasl=not")) == ("and", "subject=and", "helo=or", "sasl=not")


def test_quoted_values() -> None:
    node = parse(r'subject="a \"quoted\" (value) or && x"')
    assert isinstance(node, Condition)
    assert node.value == 'a "quoted" (value) or && x'
    assert node.value_pos == 8


def test_field_names_are_case_insensitive() -> None:
    assert shape(parse("FROM=x Size>1")) == ("and", "from=x", "size>1")


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_field_parses(name: str) -> None:
    field = FIELDS[name]
    value = {"queue": "hold", "action": "deliver"}.get(name, "7")
    for op in field.ops:
        node = parse(f"{name}{op}{value}")
        # An old name (`id`, `retry`) parses as the field it stands for.
        assert isinstance(node, Condition) and node.field == ALIASES.get(name, name) and node.op == op


def test_numbers_are_converted() -> None:
    assert parse("size>=1024") == Condition("size", ">=", 1024, 0, 6)
    assert parse("time<1700000000.25") == Condition("time", "<", 1700000000.25, 0, 5)


def test_states_and_actions_are_upper_cased() -> None:
    assert shape(parse("queue=defer action=Bounce")) == ("and", "queue=DEFER", "action=BOUNCE")


def test_messageid_with_queue_id() -> None:
    node = parse("messageid=0b5a3e0e-3c1b-4d8a-9a43-0d1f2b1d9c11:42")
    assert isinstance(node, Condition)
    assert node.value == ("0b5a3e0e-3c1b-4d8a-9a43-0d1f2b1d9c11", 42)
    node = parse("messageid=0b5a3e0e-3c1b-4d8a-9a43-0d1f2b1d9c11")
    assert isinstance(node, Condition) and node.value == "0b5a3e0e-3c1b-4d8a-9a43-0d1f2b1d9c11"


def test_metadata_key_keeps_its_case() -> None:
    node = parse("metadata.Spam-Score~9 Metadata.x=y")
    assert shape(node) == ("and", "metadata.Spam-Score~9", "metadata.x=y")


@pytest.mark.parametrize(
    ("text", "position", "problem"),
    [
        ("frm=x", 0, "unknown field 'frm'"),
        ("from=x frm=y", 7, "unknown field 'frm'"),
        ("from", 4, "expected an operator (= ~ > >= < <=) after 'from', found end of filter"),
        ("from x", 5, "expected an operator (= ~ > >= < <=) after 'from', found 'x'"),
        ("from=", 5, "expected a value after 'from=', found end of filter"),
        ("from=)", 5, "expected a value after 'from=', found ')'"),
        ("from==x", 5, "expected a value after 'from=', found '='"),
        ("=x", 0, "expected a condition (field OP value), found '='"),
        ("from=x or", 9, "expected a condition (field OP value), found end of filter"),
        ("from=x and or to=y", 11, "expected a condition (field OP value), found 'or'"),
        ("not", 3, "expected a condition (field OP value), found end of filter"),
        ("(from=x", 7, "expected ')' to close '(' at 0, found end of filter"),
        ("(from=x to=y or", 15, "expected a condition (field OP value), found end of filter"),
        ("from=x)", 6, "unexpected ')'"),
        ("()", 1, "expected a condition (field OP value), found ')'"),
        ("&& from=x", 0, "expected a condition (field OP value), found '&&'"),
        ("from=x &&", 9, "expected a condition (field OP value), found end of filter"),
        ("from=x && && to=y", 10, "expected a condition (field OP value), found '&&'"),
        ('"from"=x', 0, "expected a condition (field OP value), found a quoted string"),
        ("size~10", 4, "operator '~' does not apply to 'size' (use = > >= < <=)"),
        ("from>x", 4, "operator '>' does not apply to 'from' (use = ~)"),
        ("queue~HOLD", 5, "operator '~' does not apply to 'queue' (use =)"),
        ("size>abc", 5, "field 'size' needs a whole number, not 'abc'"),
        ("size>-1", 5, "field 'size' needs a whole number, not '-1'"),
        ("size>1.5", 5, "field 'size' needs a whole number, not '1.5'"),
        ("retries=99999999999999999999", 8, "field 'retries' needs a whole number, not '99999999999999999999'"),
        ("time>soon", 5, "field 'time' needs Unix seconds, not 'soon'"),
        ("time>1e9", 5, "field 'time' needs Unix seconds, not '1e9'"),
        ("queue=LATER", 6, "queue must be ACTIVE, DEFER or HOLD, not 'LATER'"),
        ('queue=""', 6, "queue must be ACTIVE, DEFER or HOLD, not ''"),
        ("action=explode", 7, "unknown action 'explode' (one of BOUNCE, DEFER, DELETE, DELIVER, ERROR, QUARANTINE, REJECT, RESTORE)"),
        ("messageid=abc:x1", 14, "queue id after ':' must be a whole number, not 'x1'"),
        ('messageid="abc:x1"', 10, "queue id after ':' must be a whole number, not 'x1'"),
        ("metadata.=x", 0, "metadata key must be 1 to 128 characters"),
        ("metadata." + "k" * 129 + "=x", 0, "metadata key must be 1 to 128 characters"),
        ('from=x subject="open', 15, "unterminated string"),
    ],
)
def test_errors_name_position_and_problem(text: str, position: int, problem: str) -> None:
    assert errors(text) == (position, problem)


def test_deep_nesting_is_a_clean_error() -> None:
    position, problem = errors("(" * (MAX_DEPTH + 5) + "size=1" + ")" * (MAX_DEPTH + 5))
    assert problem == f"nested more than {MAX_DEPTH} levels deep"
    assert position == MAX_DEPTH  # the 101st nested factor
    position, problem = errors("not " * (MAX_DEPTH + 1) + "size=1")
    assert problem == f"nested more than {MAX_DEPTH} levels deep"


def test_nesting_up_to_the_limit_parses() -> None:
    depth = MAX_DEPTH - 1
    assert shape(parse("(" * depth + "size=1" + ")" * depth)) == "size=1"


def test_overlong_filter_is_refused() -> None:
    position, problem = errors("size=1 " * (MAX_LENGTH // 7 + 1))
    assert position == MAX_LENGTH and "longer than" in problem


def test_long_flat_filters_do_not_recurse() -> None:
    text = " or ".join(f"size={i}" for i in range(MAX_CONDITIONS))
    node = parse(text)
    assert isinstance(node, Or) and len(node.operands) == MAX_CONDITIONS


def test_conditions_per_filter_are_bounded_with_a_position() -> None:
    terms = [f"metadata.k={i}" for i in range(MAX_CONDITIONS + 1)]
    text = " or ".join(terms)
    position, problem = errors(text)
    assert problem == f"more than {MAX_CONDITIONS} conditions in one filter"
    assert position == text.rindex(terms[-1])  # the first condition past the limit
    # The count covers every condition, however they are combined.
    position, _ = errors("size=1 " * MAX_CONDITIONS + "and (not size=2)")
    assert position == len("size=1 " * MAX_CONDITIONS + "and (not ")
