"""KFP list semantics: ``filter`` (a JSON Filter message), ``sort_by``, ``page_size``/``page_token``.

Each list endpoint names the fields a caller may filter and sort on and the column each
maps to; anything else is a 400 that lists what is accepted.

Example::

    page = Listing.parse(filter='{"predicates": [...]}', sort_by="created_at desc", page_size=10, page_token="")
    rows, next_token, total = page.apply(session, select(Run), RUN_FIELDS)
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from kfbox.errors import InvalidInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
OPERATIONS = ["OPERATION_UNSPECIFIED", "EQUALS", "NOT_EQUALS", "GREATER_THAN", "GREATER_THAN_EQUALS",
              "LESS_THAN", "LESS_THAN_EQUALS", "IN", "IS_SUBSTRING"]
# The v1 API numbered operations differently (it had no OPERATION_UNSPECIFIED), as older clients send.
V1_OPERATIONS = {0: "EQUALS", 1: "GREATER_THAN", 2: "LESS_THAN", 5: "NOT_EQUALS", 6: "GREATER_THAN_EQUALS",
                 7: "LESS_THAN_EQUALS", 8: "IN", 9: "IS_SUBSTRING"}

Fields = dict[str, InstrumentedAttribute[Any]]
TIME_FIELDS = {"created_at", "finished_at", "scheduled_at"}


@dataclasses.dataclass(frozen=True)
class Listing:
    predicates: list[dict[str, Any]]
    sort_key: str
    descending: bool
    page_size: int
    offset: int

    @classmethod
    def parse(cls, filter: str | None, sort_by: str | None, page_size: int | None, page_token: str | None,
              default_sort: str = "created_at desc") -> Listing:
        predicates: list[dict[str, Any]] = []
        if filter:
            try:
                body = json.loads(filter)
            except ValueError as exc:
                raise InvalidInput(f"filter is not JSON: {exc}. Example: "
                                   '{"predicates": [{"key": "display_name", "operation": "EQUALS", '
                                   '"string_value": "my-run"}]}') from exc
            if not isinstance(body, dict) or not isinstance(body.get("predicates", []), list):
                raise InvalidInput(f"filter must be an object with a 'predicates' list; got {filter!r}.")
            predicates = body.get("predicates", [])
        words = (sort_by or default_sort).split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise InvalidInput(f"sort_by {sort_by!r} is not valid; use '<field>' or '<field> desc'.")
        size = page_size or DEFAULT_PAGE_SIZE
        if size < 0 or size > MAX_PAGE_SIZE:
            raise InvalidInput(f"page_size {page_size} is out of range; use 1-{MAX_PAGE_SIZE}.")
        return cls(predicates, words[0], len(words) == 2 and words[1].lower() == "desc", size,
                   _decode_token(page_token))

    def apply(self, session: Session, query: Select[Any], fields: Fields) -> tuple[list[Any], str, int]:
        conditions = [_condition(p, fields) for p in self.predicates]
        query = query.where(*conditions)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        column = _column(self.sort_key, fields, "sort by")
        order = column.desc() if self.descending else column.asc()
        tiebreak = fields["id"].desc() if self.descending else fields["id"].asc()
        rows = list(session.scalars(query.order_by(order, tiebreak).offset(self.offset).limit(self.page_size)))
        next_offset = self.offset + len(rows)
        token = _encode_token(next_offset) if next_offset < total else ""
        return rows, token, total


def _column(key: str, fields: Fields, what: str) -> InstrumentedAttribute[Any]:
    if key not in fields:
        raise InvalidInput(f"Cannot {what} {key!r}; use one of: {', '.join(sorted(fields))}.")
    return fields[key]


def _condition(predicate: Any, fields: Fields) -> ColumnElement[bool]:
    if not isinstance(predicate, dict):
        raise InvalidInput(f"Filter predicate {predicate!r} must be an object.")
    key = str(predicate.get("key", ""))
    column = _column(key, fields, "filter on")
    op = predicate.get("operation", predicate.get("op", "EQUALS"))
    if isinstance(op, int):
        op = V1_OPERATIONS.get(op, "") if "op" in predicate else (OPERATIONS[op] if 0 <= op < len(OPERATIONS) else "")
    if op not in OPERATIONS[1:]:
        raise InvalidInput(f"Filter operation {op!r} is not supported; use one of: {', '.join(OPERATIONS[1:])}.")
    value = _value(predicate, key)
    if op == "IN":
        values = value if isinstance(value, list) else [value]
        return column.in_(values)
    if isinstance(value, list):
        raise InvalidInput(f"Filter operation {op} on {key!r} takes one value, not a list.")
    if op == "IS_SUBSTRING":
        return column.contains(str(value), autoescape=True)
    comparisons = {"EQUALS": column.__eq__, "NOT_EQUALS": column.__ne__, "GREATER_THAN": column.__gt__,
                   "GREATER_THAN_EQUALS": column.__ge__, "LESS_THAN": column.__lt__,
                   "LESS_THAN_EQUALS": column.__le__}
    result: ColumnElement[bool] = comparisons[op](value)
    return result


def _value(predicate: dict[str, Any], key: str) -> Any:
    for name in ("string_value", "stringValue", "int_value", "intValue", "long_value", "longValue"):
        if name in predicate:
            value = predicate[name]
            return int(value) if "long" in name.lower() or "int" in name.lower() else value
    for name in ("timestamp_value", "timestampValue"):
        if name in predicate:
            return _to_ms(predicate[name])
    for name in ("string_values", "stringValues", "int_values", "intValues", "long_values", "longValues"):
        if name in predicate:
            values = predicate[name].get("values", []) if isinstance(predicate[name], dict) else []
            return [int(v) for v in values] if "string" not in name.lower() else values
    raise InvalidInput(f"Filter predicate on {key!r} has no value; set string_value, int_value, long_value, "
                       "timestamp_value or *_values.")


def _to_ms(value: Any) -> int:
    try:
        if isinstance(value, int | float):
            return int(value * 1000)
        stamp = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return int(stamp.timestamp() * 1000)
    except ValueError as exc:
        raise InvalidInput(f"timestamp_value {value!r} is not an RFC 3339 time.") from exc


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"page_token {token!r} is not one this server issued; "
                           "pass the next_page_token of the previous page.") from exc
    if offset < 0:
        raise InvalidInput(f"page_token {token!r} is not valid.")
    return offset
