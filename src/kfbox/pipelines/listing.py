"""KFP list semantics: ``filter`` (a JSON Filter message), ``sort_by``, ``page_size``/``page_token``
(an opaque :mod:`kfbox.paging` token, as KFP's own are opaque to its clients).

A token holds the offset of its page and is signed for one *scope*: the list (``list_name``, with
what narrows it, e.g. a pipeline's versions or an experiment's runs), the sort and the filter. A
token from another list, order or filter, or one made or edited by hand, is a 400; ``page_size``
may change between pages (the offset stays right).

Each list endpoint names the fields a caller may filter and sort on and the column each
maps to; anything else is a 400 that lists what is accepted.

Example::

    page = Listing.parse("runs", filter='{"predicates": [...]}', sort_by="created_at desc", page_size=10,
                         page_token="")
    rows, next_token, total = page.apply(session, select(Run), RUN_FIELDS)
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import math
import re
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from kfbox.errors import InvalidInput
from kfbox.names import normalize_name
from kfbox.paging import PageTokens
from kfbox.parsing import client_input, load_json

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
OPERATIONS = ["OPERATION_UNSPECIFIED", "EQUALS", "NOT_EQUALS", "GREATER_THAN", "GREATER_THAN_EQUALS",
              "LESS_THAN", "LESS_THAN_EQUALS", "IN", "IS_SUBSTRING"]
# The v1 API numbered operations differently (it had no OPERATION_UNSPECIFIED), as older clients send.
V1_OPERATIONS = {0: "EQUALS", 1: "GREATER_THAN", 2: "LESS_THAN", 5: "NOT_EQUALS", 6: "GREATER_THAN_EQUALS",
                 7: "LESS_THAN_EQUALS", 8: "IN", 9: "IS_SUBSTRING"}

Fields = dict[str, InstrumentedAttribute[Any]]
TIME_FIELDS = {"created_at", "finished_at", "scheduled_at"}
INT64_MAX = 2**63 - 1
INT_TEXT = re.compile(r"-?[0-9]{1,19}")
MAX_TIME_MS = 253402300799999          # 9999-12-31T23:59:59.999Z, the end of RFC 3339
MAX_OFFSET = 2**31 - 1                 # a page_token offset beyond any table this server keeps
FILTER_EXAMPLE = '{"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": "my-run"}]}'


@dataclasses.dataclass(frozen=True)
class Listing:
    list_name: str
    """Which list (``"runs"``, ``"pipelines/<id>/versions"``...): with the sort and filter, the token's scope."""
    predicates: list[dict[str, Any]]
    sort_key: str
    descending: bool
    page_size: int
    page_token: str = ""

    @classmethod
    def parse(cls, list_name: str, filter: str | None, sort_by: str | None, page_size: int | None,
              page_token: str | None, default_sort: str = "created_at desc") -> Listing:
        predicates: list[dict[str, Any]] = []
        if filter:
            try:
                body = load_json(filter, "filter")
            except InvalidInput as exc:
                raise InvalidInput(f"{exc.message} Example: {FILTER_EXAMPLE}") from exc
            if not isinstance(body, dict) or not isinstance(body.get("predicates", []), list):
                raise InvalidInput(f"filter must be an object with a 'predicates' list; got {filter[:200]!r}. "
                                   f"Example: {FILTER_EXAMPLE}")
            predicates = body.get("predicates", [])
        words = (sort_by or default_sort).split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise InvalidInput(f"sort_by {sort_by!r} is not valid; use '<field>' or '<field> desc'.")
        size = page_size or DEFAULT_PAGE_SIZE
        if size < 0 or size > MAX_PAGE_SIZE:
            raise InvalidInput(f"page_size {page_size} is out of range; use 1-{MAX_PAGE_SIZE}.")
        return cls(list_name, predicates, words[0], len(words) == 2 and words[1].lower() == "desc", size,
                   page_token or "")

    def narrowed(self, predicates: list[dict[str, Any]], sort_key: str | None = None,
                 descending: bool | None = None) -> Listing:
        """The same page of a list the caller filters (and maybe sorts) itself: the dashboard's views."""
        return dataclasses.replace(self, predicates=predicates, sort_key=sort_key or self.sort_key,
                                   descending=self.descending if descending is None else descending)

    @property
    def scope(self) -> str:
        """What a token of this listing is signed for: the list, the order and the filter (not the page size)."""
        order = "desc" if self.descending else "asc"
        with client_input("filter"):
            where = json.dumps(self.predicates, sort_keys=True, separators=(",", ":"))
        return f"kfp {self.list_name}\n{self.sort_key} {order}\n{where}"

    @functools.cached_property
    def offset(self) -> int:
        """Where the page starts: 0 without a token, else what the token holds if it was issued for :attr:`scope`."""
        return _decode_token(self.page_token, self.scope)

    def token_at(self, offset: int) -> str:
        """The page_token for the page of this list starting at ``offset``."""
        return TOKENS.issue(offset, self.scope)

    def conditions(self, fields: Fields) -> list[ColumnElement[bool]]:
        """The filter as SQL conditions, for a query that pages some other way."""
        with client_input("filter"):
            return [_condition(p, fields) for p in self.predicates]

    def apply(self, session: Session, query: Select[Any], fields: Fields) -> tuple[list[Any], str, int]:
        offset = self.offset  # a bad token is a 400 before any query
        query = query.where(*self.conditions(fields))
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        column = _column(self.sort_key, fields, "sort by")
        order = column.desc() if self.descending else column.asc()
        tiebreak = fields["id"].desc() if self.descending else fields["id"].asc()
        rows = list(session.scalars(query.order_by(order, tiebreak).offset(offset).limit(self.page_size)))
        next_offset = offset + len(rows)
        token = self.token_at(next_offset) if next_offset < total else ""
        return rows, token, total


def _column(key: str, fields: Fields, what: str) -> InstrumentedAttribute[Any]:
    if key not in fields:
        raise InvalidInput(f"Cannot {what} {key!r}; use one of: {', '.join(sorted(fields))}.")
    return fields[key]


def _condition(predicate: Any, fields: Fields) -> ColumnElement[bool]:
    if not isinstance(predicate, dict):
        raise InvalidInput(f"Filter predicate {_show(predicate)} must be an object. Example: {FILTER_EXAMPLE}")
    key = predicate.get("key", "")
    if not isinstance(key, str):
        raise InvalidInput(f"Filter predicate key {_show(key)} must be a field name (a string).")
    column = _column(key, fields, "filter on")
    op = predicate.get("operation", predicate.get("op", "EQUALS"))
    if isinstance(op, int) and not isinstance(op, bool):
        op = V1_OPERATIONS.get(op, "") if "op" in predicate else (OPERATIONS[op] if 0 <= op < len(OPERATIONS) else "")
    if not isinstance(op, str) or op not in OPERATIONS[1:]:
        raise InvalidInput(f"Filter operation {_show(op)} is not supported; use one of: {', '.join(OPERATIONS[1:])}.")
    value = _value(predicate, key)
    for item in value if isinstance(value, list) else [value]:
        _check_type(item, column, key)
    if op == "IN":
        values = value if isinstance(value, list) else [value]
        return column.in_(values)
    if isinstance(value, list):
        raise InvalidInput(f"Filter operation {op} on {key!r} takes one value, not a list.")
    if op == "IS_SUBSTRING":
        if not isinstance(value, str):
            raise InvalidInput(f"Filter operation IS_SUBSTRING on {key!r} needs a string_value.")
        return column.contains(value, autoescape=True)
    comparisons = {"EQUALS": column.__eq__, "NOT_EQUALS": column.__ne__, "GREATER_THAN": column.__gt__,
                   "GREATER_THAN_EQUALS": column.__ge__, "LESS_THAN": column.__lt__,
                   "LESS_THAN_EQUALS": column.__le__}
    result: ColumnElement[bool] = comparisons[op](value)
    return result


def _value(predicate: dict[str, Any], key: str) -> Any:
    for name in ("string_value", "stringValue"):
        if name in predicate:
            return _string(predicate[name], name, key)
    for name in ("int_value", "intValue", "long_value", "longValue"):
        if name in predicate:
            return _integer(predicate[name], name, key)
    for name in ("timestamp_value", "timestampValue"):
        if name in predicate:
            return _to_ms(predicate[name], key)
    for name in ("string_values", "stringValues", "int_values", "intValues", "long_values", "longValues"):
        if name in predicate:
            holder = predicate[name]
            values = holder.get("values", []) if isinstance(holder, dict) else None
            if not isinstance(values, list):
                raise InvalidInput(f"Filter {name} on {key!r} must be an object like {{\"values\": [...]}}; "
                                   f"got {_show(holder)}.")
            if "string" in name.lower():
                return [_string(v, name, key) for v in values]
            return [_integer(v, name, key) for v in values]
    raise InvalidInput(f"Filter predicate on {key!r} has no value; set string_value, int_value, long_value, "
                       "timestamp_value or *_values.")


def _string(value: Any, name: str, key: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"Filter {name} on {key!r} must be a string; got {_show(value)}.")
    return normalize_name(value)  # names are stored NFC: an NFD spelling finds them too


def _integer(value: Any, name: str, key: str) -> int:
    """An int64 as protobuf JSON writes it: a number or a decimal string (``"5"``)."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer() and abs(value) <= INT64_MAX:
        number = int(value)
    elif isinstance(value, str) and INT_TEXT.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or not -INT64_MAX - 1 <= number <= INT64_MAX:
        raise InvalidInput(f"Filter {name} on {key!r} must be a whole number within 64 bits (a number or a "
                           f"string like \"5\"); got {_show(value)}.")
    return number


def _check_type(value: Any, column: InstrumentedAttribute[Any], key: str) -> None:
    """The value's type must match the column's: PostgreSQL refuses text = integer outright."""
    try:
        expected = column.type.python_type
    except NotImplementedError:
        return
    if expected is str and not isinstance(value, str):
        raise InvalidInput(f"Filter on {key!r} compares text; use string_value (got {_show(value)}).")
    if expected is int and not isinstance(value, int):
        what = "a time; use timestamp_value" if key in TIME_FIELDS else "a number; use int_value or long_value"
        raise InvalidInput(f"Filter on {key!r} compares {what} (got {_show(value)}).")


def _to_ms(value: Any, key: str = "created_at") -> int:
    """An RFC 3339 time (protobuf Timestamp JSON) or seconds since the epoch, as milliseconds."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            ms = value * 1000
            if not (isinstance(ms, int) or math.isfinite(ms)) or abs(ms) > MAX_TIME_MS:
                raise ValueError(value)
            return int(ms)
        if not isinstance(value, str):
            raise ValueError(value)
        stamp = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.UTC)
        return int(stamp.timestamp() * 1000)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidInput(f"Filter timestamp_value on {key!r} must be an RFC 3339 time like "
                           f"\"2026-01-31T12:00:00Z\"; got {_show(value)}.") from exc


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


TOKENS = PageTokens()
"""This server's page tokens (kfbox.paging); a KFP list token holds the offset of its page."""


def _decode_token(token: str, scope: str) -> int:
    if not token:
        return 0
    offset = TOKENS.read(token, scope, "page_token")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"page_token {token[:80]!r} does not hold a page of this list; "
                           "pass the next_page_token of the previous page, or none for the first page.")
    return offset
