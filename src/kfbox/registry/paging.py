"""List paging: ``pageSize``, ``orderBy``, ``sortOrder`` and opaque ``nextPageToken``.

Pages are keyset pages: the token carries the sort value and id of the last item shown,
so page N costs the same as page 1. The token is signed (HMAC with a per-server secret)
over the query it belongs to, so a forged or edited token, or one replayed against a
different list, filter or order, is a 400 rather than a surprise.

The upstream client's pager treats an empty token as "first page" and stops when the
token comes back equal to the one of the first page; the last page returns ``""``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
from typing import Any

from sqlalchemy import Select, and_, or_

from kfbox.errors import InvalidInput
from kfbox.registry.tables import Resource

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10_000
ORDER_COLUMNS: dict[str, Any] = {"ID": Resource.id, "CREATE_TIME": Resource.created_ms,
                                 "LAST_UPDATE_TIME": Resource.updated_ms}
_ROW_ATTR = {"ID": "id", "CREATE_TIME": "created_ms", "LAST_UPDATE_TIME": "updated_ms"}


@dataclasses.dataclass(frozen=True)
class Page:
    size: int
    order_by: str
    descending: bool
    scope: str
    after: tuple[int, int] | None = None   # (sort value, id) of the last item already shown


class Paginator:
    """Parses list query parameters and issues tokens only this server accepts."""

    def __init__(self, secret: bytes | None = None) -> None:
        self.secret = secret or secrets.token_bytes(32)

    def page(self, page_size: str | None, order_by: str | None, sort_order: str | None, token: str | None,
             scope: str) -> Page:
        size = _page_size(page_size)
        order = (order_by or "ID").upper()
        if order not in ORDER_COLUMNS:
            raise InvalidInput(f"orderBy {order_by!r} is not supported; use one of CREATE_TIME, LAST_UPDATE_TIME, ID.")
        direction = (sort_order or "ASC").upper()
        if direction not in ("ASC", "DESC"):
            raise InvalidInput(f"sortOrder {sort_order!r} is not supported; use ASC or DESC.")
        page = Page(size, order, direction == "DESC", scope)
        if token:
            page = dataclasses.replace(page, after=self._read(token, page))
        return page

    def next_token(self, page: Page, row: Any) -> str:
        payload = _b64(json.dumps([getattr(row, _ROW_ATTR[page.order_by]), row.id]).encode())
        return f"{payload}.{self._sign(payload, page)}"

    def apply(self, stmt: Select[Any], page: Page) -> Select[Any]:
        """Add keyset condition, order and limit (one extra row tells whether more exist)."""
        column = ORDER_COLUMNS[page.order_by]
        if page.after is not None:
            value, last_id = page.after
            if page.order_by == "ID":
                stmt = stmt.where(Resource.id < last_id if page.descending else Resource.id > last_id)
            elif page.descending:
                stmt = stmt.where(or_(column < value, and_(column == value, Resource.id < last_id)))
            else:
                stmt = stmt.where(or_(column > value, and_(column == value, Resource.id > last_id)))
        if page.order_by == "ID":
            order = [Resource.id.desc() if page.descending else Resource.id.asc()]
        else:
            order = [column.desc(), Resource.id.desc()] if page.descending else [column.asc(), Resource.id.asc()]
        return stmt.order_by(*order).limit(page.size + 1)

    def _sign(self, payload: str, page: Page) -> str:
        message = "\n".join((payload, page.order_by, str(page.descending), page.scope)).encode()
        return _b64(hmac.new(self.secret, message, hashlib.sha256).digest()[:18])

    def _read(self, token: str, page: Page) -> tuple[int, int]:
        problem = InvalidInput(f"nextPageToken {token[:80]!r} was not issued by this server for this list, order "
                               "and filter (tokens also expire when the server restarts). "
                               "Start again without nextPageToken.")
        payload, _, signature = token.partition(".")
        if len(token) > 512 or not hmac.compare_digest(signature.encode(), self._sign(payload, page).encode()):
            raise problem
        try:
            value, last_id = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError) as exc:
            raise problem from exc
        return int(value), int(last_id)


def _page_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9 or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidInput(f"pageSize {raw[:40]!r} is not valid; use a whole number from 1 to {MAX_PAGE_SIZE}.")
    return int(raw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
