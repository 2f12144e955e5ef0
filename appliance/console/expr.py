"""Math over graph series (`100*spam/(spam+clean)`): a small parser and evaluator, never eval().

The language: numbers, series names, `+ - * /`, unary minus and parentheses. A name is a run of
letters, digits and `_ . : @`, or any text in double quotes (`"mail-queue-count"`, names with a
dash). Evaluation is point by point over aligned series: a missing point (None) or a division
by zero gives a missing point, as rrdtool's CDEFs give UNKNOWN.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence

from appliance.errors import InvalidInput

MAX_LENGTH = 1000  # characters of one expression
MAX_DEPTH = 50  # nested parentheses and unary signs

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.:@]*)
  | (?P<quoted>"[^"\n]{1,200}")
  | (?P<op>[-+*/()])
""", re.VERBOSE)


class ExpressionError(InvalidInput):
    """A bad expression; `position` is the 1-based column of the problem."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"expression at {position}: {message}")
        self.position = position
        self.reason = message


@dataclasses.dataclass(frozen=True)
class Number:
    value: float


@dataclasses.dataclass(frozen=True)
class Name:
    name: str
    position: int


@dataclasses.dataclass(frozen=True)
class Negate:
    operand: "Node"


@dataclasses.dataclass(frozen=True)
class Binary:
    op: str
    left: "Node"
    right: "Node"


Node = Number | Name | Negate | Binary


@dataclasses.dataclass(frozen=True)
class _Token:
    kind: str  # number | name | op | end
    text: str
    position: int  # 1-based


def tokenize(text: str) -> list[_Token]:
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    tokens, at = [], 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise ExpressionError(f"unexpected {text[at]!r}", at + 1)
        kind = match.lastgroup or ""
        if kind == "quoted":
            tokens.append(_Token("name", match.group()[1:-1], at + 1))
        elif kind != "space":
            tokens.append(_Token(kind, match.group(), at + 1))
        at = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens, self.at, self.depth = tokens, 0, 0

    def peek(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def expression(self) -> Node:
        node = self.term()
        while self.peek().text in ("+", "-") and self.peek().kind == "op":
            op = self.take().text
            node = Binary(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek().text in ("*", "/") and self.peek().kind == "op":
            op = self.take().text
            node = Binary(op, node, self.factor())
        return node

    def factor(self) -> Node:
        token = self.take()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"nested more than {MAX_DEPTH} deep", token.position)
        try:
            if token.kind == "number":
                return Number(float(token.text))
            if token.kind == "name":
                return Name(token.text, token.position)
            if token.kind == "op" and token.text in ("-", "+"):
                operand = self.factor()
                return Negate(operand) if token.text == "-" else operand
            if token.kind == "op" and token.text == "(":
                node = self.expression()
                closing = self.take()
                if closing.text != ")":
                    raise ExpressionError(_expected("')'", closing), closing.position)
                return node
            raise ExpressionError(_expected("a number, a series name or '('", token), token.position)
        finally:
            self.depth -= 1


def _expected(what: str, token: _Token) -> str:
    found = "the end" if token.kind == "end" else repr(token.text)
    return f"expected {what}, found {found}"


def parse(text: str) -> Node:
    """The expression's tree; ExpressionError (with the column) when it does not parse."""
    tokens = tokenize(text)
    if tokens[0].kind == "end":
        raise ExpressionError("empty expression", 1)
    parser = _Parser(tokens)
    node = parser.expression()
    rest = parser.peek()
    if rest.kind != "end":
        raise ExpressionError(f"unexpected {rest.text!r}", rest.position)
    return node


def names(node: Node) -> list[str]:
    """The series names an expression uses, in order of first use."""
    found: dict[str, None] = {}

    def walk(n: Node) -> None:
        if isinstance(n, Name):
            found.setdefault(n.name)
        elif isinstance(n, Negate):
            walk(n.operand)
        elif isinstance(n, Binary):
            walk(n.left)
            walk(n.right)

    walk(node)
    return list(found)


def resolve(name: str, available: Sequence[str]) -> str | None:
    """`name` itself, or the one available name ending in `:name` (`spam` for `mail:spam`)."""
    if name in available:
        return name
    matches = [a for a in available if a.endswith(":" + name)]
    return matches[0] if len(matches) == 1 else None


Series = Sequence[float | None]


def evaluate(text: str, series: Mapping[str, Series], *, length: int | None = None) -> list[float | None]:
    """The expression point by point over `series` (all of one length, aligned in time)."""
    node = parse(text)
    available = list(series)
    bound: dict[str, Series] = {}

    def bind(n: Node) -> None:
        if isinstance(n, Name):
            found = resolve(n.name, available)
            if found is None:
                hint = "ambiguous" if any(a.endswith(":" + n.name) for a in available) else "unknown"
                raise ExpressionError(f"{hint} series {n.name!r}", n.position)
            bound[n.name] = series[found]
        elif isinstance(n, Negate):
            bind(n.operand)
        elif isinstance(n, Binary):
            bind(n.left)
            bind(n.right)

    bind(node)
    size = length if length is not None else max((len(s) for s in bound.values()), default=1)
    return [_point(node, bound, i) for i in range(size)]


def _point(node: Node, bound: Mapping[str, Series], i: int) -> float | None:
    if isinstance(node, Number):
        return node.value
    if isinstance(node, Name):
        values = bound[node.name]
        value = values[i] if i < len(values) else None
        return None if value is None or math.isnan(value) else float(value)
    if isinstance(node, Negate):
        inner = _point(node.operand, bound, i)
        return None if inner is None else -inner
    left, right = _point(node.left, bound, i), _point(node.right, bound, i)
    if left is None or right is None:
        return None
    if node.op == "+":
        result = left + right
    elif node.op == "-":
        result = left - right
    elif node.op == "*":
        result = left * right
    elif right == 0:
        return None
    else:
        result = left / right
    return result if math.isfinite(result) else None
