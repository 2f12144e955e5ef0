"""HQL lexer: filter text to tokens, each with its 0-based position."""

from __future__ import annotations

import dataclasses
import enum

from appliance.errors import FilterError


class Kind(enum.Enum):
    WORD = "word"  # a bare word: field name, keyword or unquoted value
    STRING = "string"  # a "double-quoted" value, escapes resolved
    OP = "operator"  # = ~ > >= < <=
    LPAREN = "'('"
    RPAREN = "')'"
    JOIN = "'&&'"
    END = "end of filter"


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    pos: int


# Characters that end a bare word; a single '&' may appear inside one, only '&&' joins.
_DELIMITERS = frozenset('()"=~<>')
_ESCAPES = {'"': '"', "\\": "\\"}


def tokenize(text: str) -> list[Token]:
    """All tokens of `text`, ending with one END token; FilterError on a malformed string."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(Token(Kind.LPAREN if ch == "(" else Kind.RPAREN, ch, i))
            i += 1
        elif text.startswith("&&", i):
            tokens.append(Token(Kind.JOIN, "&&", i))
            i += 2
        elif ch in "<>":
            op = text[i : i + 2] if text.startswith("=", i + 1) else ch
            tokens.append(Token(Kind.OP, op, i))
            i += len(op)
        elif ch in "=~":
            tokens.append(Token(Kind.OP, ch, i))
            i += 1
        elif ch == '"':
            value, end = _string(text, i)
            tokens.append(Token(Kind.STRING, value, i))
            i = end
        else:
            end = _word_end(text, i)
            tokens.append(Token(Kind.WORD, text[i:end], i))
            i = end
    tokens.append(Token(Kind.END, "", n))
    return tokens


def _word_end(text: str, start: int) -> int:
    i = start
    while i < len(text):
        ch = text[i]
        if ch.isspace() or ch in _DELIMITERS or text.startswith("&&", i):
            break
        i += 1
    return i


def _string(text: str, start: int) -> tuple[str, int]:
    """The value of the quoted string opening at `start` and the offset just past it."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if not nxt:
                break
            if nxt not in _ESCAPES:
                raise FilterError(i, f"invalid escape '\\{nxt}' in string (only \\\" and \\\\)")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise FilterError(start, "unterminated string")
