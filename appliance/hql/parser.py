"""HQL parser: tokens to an AST by recursive descent, errors naming the position.

Grammar (lowest precedence first):
    filter    := [ expr ( '&&' expr )* ]
    expr      := term ( 'or' term )*
    term      := factor ( [ 'and' ] factor )*      adjacency is an implicit 'and'
    factor    := 'not' factor | '(' filter ')' | condition
    condition := FIELD OP VALUE                      VALUE is a bare word or "quoted"
"""

from __future__ import annotations

from appliance.errors import FilterError
from appliance.hql import fields
from appliance.hql.ast import And, Condition, Node, Not, Or
from appliance.hql.lexer import Kind, Token, tokenize

MAX_LENGTH = 65536  # a filter is typed or generated, never megabytes
MAX_DEPTH = 100  # nesting of parentheses and 'not', so recursion stays bounded
# Conditions per filter: the cost of a search grows with them, and each store bounds the size
# of one SQL expression (SQLite: an expression tree at most 1,000 deep, so 'a or b or ...'
# past about 1,000 terms fails with "Expression tree is too large"). Generated filters of a
# few hundred OR'ed terms stay well inside both.
MAX_CONDITIONS = 500
_KEYWORDS = frozenset({"and", "or", "not"})


def parse(text: str) -> Node | None:
    """The AST of `text`, None when it is empty or only whitespace; FilterError otherwise."""
    if len(text) > MAX_LENGTH:
        raise FilterError(MAX_LENGTH, f"filter longer than {MAX_LENGTH} characters")
    return _Parser(tokenize(text)).parse()


def _describe(tok: Token) -> str:
    if tok.kind is Kind.END:
        return "end of filter"
    return f"'{tok.text}'" if tok.kind is not Kind.STRING else "a quoted string"


def _combine(cls: type[And] | type[Or], items: list[Node]) -> Node:
    return items[0] if len(items) == 1 else cls(tuple(items))


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.conditions = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def _is_keyword(self, word: str) -> bool:
        return self.tok.kind is Kind.WORD and self.tok.text.lower() == word

    def parse(self) -> Node | None:
        if self.tok.kind is Kind.END:
            return None
        node = self._filter()
        if self.tok.kind is not Kind.END:
            raise FilterError(self.tok.pos, f"unexpected {_describe(self.tok)}")
        return node

    def _filter(self) -> Node:
        items = [self._expr()]
        while self.tok.kind is Kind.JOIN:
            self._advance()
            items.append(self._expr())
        return _combine(And, items)

    def _expr(self) -> Node:
        items = [self._term()]
        while self._is_keyword("or"):
            self._advance()
            items.append(self._term())
        return _combine(Or, items)

    def _term(self) -> Node:
        items = [self._factor()]
        while True:
            if self._is_keyword("and"):
                self._advance()
            elif not self._starts_factor():
                break
            items.append(self._factor())
        return _combine(And, items)

    def _starts_factor(self) -> bool:
        if self.tok.kind is Kind.LPAREN:
            return True
        return self.tok.kind is Kind.WORD and self.tok.text.lower() not in ("and", "or")

    def _factor(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(self.tok.pos, f"nested more than {MAX_DEPTH} levels deep")
        try:
            return self._factor_inner()
        finally:
            self.depth -= 1

    def _factor_inner(self) -> Node:
        tok = self.tok
        if self._is_keyword("not"):
            self._advance()
            return Not(self._factor(), tok.pos)
        if tok.kind is Kind.LPAREN:
            self._advance()
            node = self._filter()
            if self.tok.kind is not Kind.RPAREN:
                raise FilterError(self.tok.pos, f"expected ')' to close '(' at {tok.pos}, found {_describe(self.tok)}")
            self._advance()
            return node
        return self._condition()

    def _condition(self) -> Condition:
        tok = self.tok
        if tok.kind is not Kind.WORD or tok.text.lower() in _KEYWORDS:
            raise FilterError(tok.pos, f"expected a condition (field OP value), found {_describe(tok)}")
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise FilterError(tok.pos, f"more than {MAX_CONDITIONS} conditions in one filter")
        self._advance()
        field, key = fields.lookup(tok.text, tok.pos)
        op = self.tok
        if op.kind is not Kind.OP:
            raise FilterError(op.pos, f"expected an operator (= ~ > >= < <=) after '{tok.text}', found {_describe(op)}")
        self._advance()
        if op.text not in field.ops:
            allowed = " ".join(sorted(field.ops, key=" = ~ > >= < <=".index))
            raise FilterError(op.pos, f"operator '{op.text}' does not apply to '{field.name}' (use {allowed})")
        val = self.tok
        if val.kind not in (Kind.WORD, Kind.STRING):
            raise FilterError(val.pos, f"expected a value after '{tok.text}{op.text}', found {_describe(val)}")
        self._advance()
        value = fields.check_value(field, op.text, val.text, val.pos, quoted=val.kind is Kind.STRING)
        return Condition(field.name, op.text, value, tok.pos, val.pos, key)
