"""The HQL lexer: tokens, positions, quoted strings and their escapes."""

from __future__ import annotations

import pytest

from appliance.errors import FilterError
from appliance.hql.lexer import Kind, tokenize


def kinds(text: str) -> list[tuple[Kind, str, int]]:
    return [(t.kind, t.text, t.pos) for t in tokenize(text)]


def test_words_operators_and_positions() -> None:
    assert kinds("from=a@b.c  size>=10") == [
        (Kind.WORD, "from", 0), (Kind.OP, "=", 4), (Kind.WORD, "a@b.c", 5),
        (Kind.WORD, "size", 12), (Kind.OP, ">=", 16), (Kind.WORD, "10", 18), (Kind.END, "", 20),
    ]


@pytest.mark.parametrize("op", ["=", "~", ">", ">=", "<", "<="])
def test_every_operator(op: str) -> None:
    assert kinds(f"x{op}y")[1] == (Kind.OP, op, 1)


def test_parentheses_and_join() -> None:
    assert [k for k, _, _ in kinds("(a=1)&&b=2")] == [
        Kind.LPAREN, Kind.WORD, Kind.OP, Kind.WORD, Kind.RPAREN, Kind.JOIN,
        Kind.WORD, Kind.OP, Kind.WORD, Kind.END,
    ]


def test_single_ampersand_is_part_of_a_word() -> None:
    assert kinds("subject~a&b")[2] == (Kind.WORD, "a&b", 8)


def test_word_ends_at_join() -> None:
    assert kinds("a=b&&c=d")[2:4] == [(Kind.WORD, "b", 2), (Kind.JOIN, "&&", 3)]


def test_quoted_string_with_escapes() -> None:
    toks = kinds(r'subject="say \"hi\" \\ (now) && x"')
    assert toks[2] == (Kind.STRING, 'say "hi" \\ (now) && x', 8)
    assert toks[3][0] is Kind.END


def test_empty_quoted_string() -> None:
    assert kinds('from=""')[2] == (Kind.STRING, "", 5)


def test_unterminated_string_points_at_its_quote() -> None:
    with pytest.raises(FilterError) as e:
        tokenize('from=a subject="abc')
    assert e.value.position == 15
    assert e.value.problem == "unterminated string"


def test_backslash_at_end_is_unterminated() -> None:
    with pytest.raises(FilterError) as e:
        tokenize('subject="abc\\')
    assert (e.value.position, e.value.problem) == (8, "unterminated string")


def test_unknown_escape_points_at_backslash() -> None:
    with pytest.raises(FilterError) as e:
        tokenize(r'subject="a\nb"')
    assert e.value.position == 10
    assert "invalid escape '\\n'" in e.value.problem


def test_message_format() -> None:
    with pytest.raises(FilterError, match=r"^invalid filter at 2: unterminated string$"):
        tokenize('a="')
