"""``filterQuery``: a tokenizer and a recursive-descent parser into SQLAlchemy expressions.

The grammar is the SQL-like subset the upstream client documents::

    expr       := and_expr (OR and_expr)*
    and_expr   := unary (AND unary)*
    unary      := NOT unary | '(' expr ')' | comparison
    comparison := property op value | property IN '(' value (',' value)* ')'
    op         := = | != | <> | > | < | >= | <= | LIKE | ILIKE
    property   := word | `quoted word`, optionally followed by .string_value/.int_value/...
    value      := 'str' | "str" | number | true | false

Values only ever become bound parameters, never SQL text; property names map to known
columns or to a path inside the JSON columns (with a conservative character set), so no
input can change the shape of the statement.

Example::

    where = parse_filter('(name = "a" OR name = "b") AND accuracy > 0.9', MODEL_VERSION)
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_
from sqlalchemy.sql.elements import ColumnElement as _Col

from kfbox.errors import InvalidInput
from kfbox.registry.kinds import Kind
from kfbox.registry.tables import Resource

MAX_FILTER_LENGTH = 4096
MAX_DEPTH = 32
MAX_COMPARISONS = 200
MAX_NUMBER = 2**53
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<op><>|!=|>=|<=|=|>|<)
  | (?P<punct>[(),])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![\w.])
  | (?P<quoted>`[^`]+`(?:\.\w+)?)
  | (?P<word>[^\W\d][\w\-:/@]*(?:\.[^\W\d][\w\-:/@]*)*)
""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "TRUE", "FALSE"}
_TYPED = {"string_value", "int_value", "double_value", "bool_value"}
_SAFE_KEY = re.compile(r"^[^\"\\`{},\x00-\x1f\x7f]{1,255}$")
_COLUMNS = {"id": Resource.id, "name": Resource.name, "externalId": Resource.external_id,
            "external_id": Resource.external_id, "createTimeSinceEpoch": Resource.created_ms,
            "lastUpdateTimeSinceEpoch": Resource.updated_ms, "state": Resource.state}
_INT_COLUMNS = {"id", "createTimeSinceEpoch", "lastUpdateTimeSinceEpoch"}


@dataclasses.dataclass(frozen=True)
class Token:
    type: str   # op, punct, string, number, word, keyword, quoted
    text: str
    value: Any = None


def tokenize(query: str) -> list[Token]:
    if len(query) > MAX_FILTER_LENGTH:
        raise InvalidInput(f"filterQuery is {len(query)} characters long; the limit is {MAX_FILTER_LENGTH}.")
    tokens: list[Token] = []
    pos = 0
    while pos < len(query):
        match = _TOKEN.match(query, pos)
        if not match:
            raise InvalidInput(f"filterQuery: unexpected character {query[pos]!r} at position {pos} in {query!r}. "
                               'Example: name = "my-model" AND state = "LIVE"')
        pos = match.end()
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "ws":
            continue
        if kind == "string":
            tokens.append(Token("string", text, re.sub(r"\\(.)", r"\1", text[1:-1])))
        elif kind == "number":
            number = float(text) if any(c in text for c in ".eE") else int(text)
            if not math.isfinite(number) or abs(number) > MAX_NUMBER:
                raise InvalidInput(f"filterQuery: the number {text[:40]} is out of range (at most {MAX_NUMBER:.0e}).")
            tokens.append(Token("number", text, number))
        elif kind == "word" and text.upper() in _KEYWORDS:
            tokens.append(Token("keyword", text.upper()))
        else:
            tokens.append(Token(kind, text))
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token], kind: Kind, query: str) -> None:
        self.tokens = tokens
        self.pos = 0
        self.kind = kind
        self.query = query
        self.depth = 0
        self.comparisons = 0

    def fail(self, what: str) -> InvalidInput:
        return InvalidInput(f"filterQuery {self.query!r}: {what}. "
                            'Example: (name = "a" OR name = "b") AND accuracy.double_value > 0.9')

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise self.fail("it ends too early")
        self.pos += 1
        return token

    def accept(self, type_: str, text: str) -> bool:
        token = self.peek()
        if token is not None and token.type == type_ and token.text == text:
            self.pos += 1
            return True
        return False

    def parse(self) -> ColumnElement[bool]:
        expr = self.expr()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.take().text!r}")
        return expr

    def expr(self) -> ColumnElement[bool]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        parts = [self.and_expr()]
        while self.accept("keyword", "OR"):
            parts.append(self.and_expr())
        self.depth -= 1
        return parts[0] if len(parts) == 1 else or_(*parts)

    def and_expr(self) -> ColumnElement[bool]:
        parts = [self.unary()]
        while self.accept("keyword", "AND"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else and_(*parts)

    def unary(self) -> ColumnElement[bool]:
        if self.accept("keyword", "NOT"):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
            inner = self.unary()
            self.depth -= 1
            return not_(inner)
        if self.accept("punct", "("):
            inner = self.expr()
            if not self.accept("punct", ")"):
                raise self.fail("a '(' is not closed")
            return inner
        return self.comparison()

    def value(self) -> Any:
        token = self.take()
        if token.type in ("string", "number"):
            return token.value
        if token.type == "keyword" and token.text in ("TRUE", "FALSE"):
            return token.text == "TRUE"
        raise self.fail(f"expected a value (a quoted string, number, true or false), got {token.text!r}")

    def comparison(self) -> ColumnElement[bool]:
        token = self.take()
        if token.type not in ("word", "quoted"):
            raise self.fail(f"expected a property name, got {token.text!r}")
        prop, typed = _split_property(token)
        if self.accept("keyword", "IN"):
            if not self.accept("punct", "("):
                raise self.fail("IN needs a parenthesised list of values")
            values = [self.value()]
            while self.accept("punct", ","):
                values.append(self.value())
            if not self.accept("punct", ")"):
                raise self.fail("the IN list is not closed")
            return or_(*(self.compare(prop, typed, "=", v) for v in values))
        op_token = self.take()
        if op_token.type == "op" or (op_token.type == "keyword" and op_token.text in ("LIKE", "ILIKE")):
            return self.compare(prop, typed, op_token.text, self.value())
        raise self.fail(f"expected an operator after {token.text!r}, got {op_token.text!r}")

    def compare(self, prop: str, typed: str | None, op: str, value: Any) -> ColumnElement[bool]:
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.fail(f"it has more than {MAX_COMPARISONS} comparisons")
        if typed is None and prop in _COLUMNS:
            column: Any = _COLUMNS[prop]
            if prop in _INT_COLUMNS:
                value = _as_int(value, prop, self)
            elif not isinstance(value, str):
                raise self.fail(f"{prop} is a string; quote the value")
            return _apply(column, op, value, self)
        if typed is None and prop == "artifactType" and self.kind.is_artifact:
            return _apply(Resource.kind, op, _as_text(value), self)
        if typed is None and prop == self.kind.state_field:
            return _apply(Resource.state, op, value, self)
        if typed is None and prop == self.kind.parent_field:
            return _apply(Resource.parent_id, op, _as_int(value, prop, self), self)
        known = {f.wire: f for f in self.kind.fields}
        if typed is None and (prop in known or prop == "description"):
            return _apply(Resource.attrs[prop].as_string(), op, _as_text(value), self)
        return self.custom(prop, typed, op, value)

    def custom(self, prop: str, typed: str | None, op: str, value: Any) -> ColumnElement[bool]:
        if not _SAFE_KEY.match(prop):
            raise self.fail(f"custom property name {prop!r} has characters filterQuery cannot address")
        if typed is None:
            if isinstance(value, bool):
                typed = "bool_value"
            elif isinstance(value, str):
                typed = "string_value"
            elif isinstance(value, int) and op in ("=", "!=", "<>", ">", "<", ">=", "<="):
                as_int = _apply(Resource.custom[(prop, "int_value")].as_integer(), op, value, self)
                as_double = _apply(Resource.custom[(prop, "double_value")].as_float(), op, value, self)
                return or_(as_int, as_double)
            else:
                typed = "double_value"
        path = Resource.custom[(prop, typed)]
        if typed == "string_value":
            return _apply(path.as_string(), op, _as_text(value), self)
        if typed == "bool_value":
            if not isinstance(value, bool) or op not in ("=", "!=", "<>"):
                raise self.fail(f"{prop}.bool_value compares with = or != to true or false")
            # MySQL's boolean extraction maps a missing key to false; require the key first
            return and_(path.as_string().is_not(None), _apply(path.as_boolean(), op, value, self))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{prop}.{typed} compares with a number, got {value!r}")
        if typed == "int_value":
            return _apply(path.as_integer(), op, value, self)
        return _apply(path.as_float(), op, value, self)


def _split_property(token: Token) -> tuple[str, str | None]:
    text = token.text
    if token.type == "quoted":
        close = text.rindex("`")
        name, rest = text[1:close], text[close + 1:]
        typed = rest[1:] if rest else None
    else:
        name, _, typed_part = text.rpartition(".")
        if name and (typed_part in _TYPED or typed_part.endswith("_value")):
            typed = typed_part
        else:
            name, typed = text, None
    if typed is not None and typed not in _TYPED:
        raise InvalidInput(f"filterQuery: {text!r} has an unknown type suffix {typed!r}; use one of "
                           + ", ".join(sorted(_TYPED)))
    return name, typed


def _as_int(value: Any, prop: str, parser: _Parser) -> int:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise parser.fail(f"{prop} compares with an integer, got {value!r}")


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _apply(column: Any, op: str, value: Any, parser: _Parser) -> ColumnElement[bool]:
    if op in ("LIKE", "ILIKE"):
        if not isinstance(value, str):
            raise parser.fail(f"{op} needs a quoted pattern, got {value!r}")
        pattern: _Col[bool] = column.like(value) if op == "LIKE" else column.ilike(value)
        return pattern
    result: _Col[bool] = {
        "=": lambda: column == value, "!=": lambda: column != value, "<>": lambda: column != value,
        ">": lambda: column > value, "<": lambda: column < value, ">=": lambda: column >= value,
        "<=": lambda: column <= value,
    }[op]()
    return result


def parse_filter(query: str | None, kind: Kind) -> ColumnElement[bool] | None:
    """The WHERE clause for ``query`` on entities of ``kind``; None for no filter."""
    if query is None or not query.strip():
        return None
    tokens = tokenize(query)
    if not tokens:
        return None
    return _Parser(tokens, kind, query).parse()

