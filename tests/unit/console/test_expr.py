"""Math expressions over series: parsing, errors with their column, point-by-point values."""

from __future__ import annotations

import pytest

from appliance.console import expr


def test_ratio_of_series_point_by_point() -> None:
    series = {"mail:spam": [1.0, 3.0, 0.0, None], "mail:clean": [3.0, 1.0, 0.0, 2.0]}
    assert expr.evaluate("100*spam/(spam+clean)", series) == [25.0, 75.0, None, None]


def test_precedence_unary_minus_and_numbers() -> None:
    assert expr.evaluate("2+3*4", {}, length=1) == [14.0]
    assert expr.evaluate("(2+3)*4", {}, length=1) == [20.0]
    assert expr.evaluate("-a - -2", {"a": [5.0]}) == [-3.0]
    assert expr.evaluate("a/2.5e1", {"a": [50.0]}) == [2.0]
    assert expr.evaluate("10-4-3", {}, length=1) == [3.0]
    assert expr.evaluate("64/4/2", {}, length=1) == [8.0]


def test_quoted_names_and_exact_names_win() -> None:
    series = {"mail-queue-count": [10.0], "queue:defer": [2.0], "defer": [7.0]}
    assert expr.evaluate('"mail-queue-count" / defer', series) == [10.0 / 7.0]
    assert expr.evaluate("queue:defer*2", series) == [4.0]


@pytest.mark.parametrize("text, position, fragment", [
    ("spam +", 7, "found the end"),
    ("(spam", 6, "expected ')'"),
    ("spam * * 2", 8, "found '*'"),
    ("spam $ 2", 6, "unexpected '$'"),
    ("spam 2", 6, "unexpected '2'"),
    ("", 1, "empty"),
    ("__import__('os')", 12, "unexpected"),
])
def test_errors_name_the_column(text: str, position: int, fragment: str) -> None:
    with pytest.raises(expr.ExpressionError) as info:
        expr.evaluate(text, {"spam": [1.0]})
    assert info.value.position == position
    assert fragment in str(info.value)


def test_unknown_and_ambiguous_series() -> None:
    series = {"a:spam": [1.0], "b:spam": [2.0], "clean": [1.0]}
    with pytest.raises(expr.ExpressionError, match="ambiguous series 'spam'"):
        expr.evaluate("clean+spam", series)
    with pytest.raises(expr.ExpressionError, match="at 7: unknown series 'ham'"):
        expr.evaluate("clean+ham", series)


def test_limits_on_size_and_depth() -> None:
    with pytest.raises(expr.ExpressionError, match="nested"):
        expr.parse("(" * 60 + "1" + ")" * 60)
    with pytest.raises(expr.ExpressionError, match="longer"):
        expr.parse("1+" * 600 + "1")


def test_names_in_order_of_use() -> None:
    assert expr.names(expr.parse("b + a*b - (c)")) == ["b", "a", "c"]
