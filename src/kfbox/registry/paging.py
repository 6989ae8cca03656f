"""List paging: ``pageSize``, ``orderBy``, ``sortOrder`` and opaque ``nextPageToken``.

Pages are keyset pages: the token (a :class:`kfbox.paging.PageTokens` token, signed over the
list, order and filter it belongs to) carries the sort value and id of the last item shown, so
page N costs the same as page 1.

The upstream client's pager treats an empty token as "first page" and stops when the
token comes back equal to the one of the first page; the last page returns ``""``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from sqlalchemy import Select, and_, or_

from kfbox.errors import InvalidInput
from kfbox.paging import PageTokens
from kfbox.registry.tables import Resource

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10_000
PAGE_SIZE = re.compile(r"[1-9][0-9]{0,8}")
"""``pageSize`` as upstream's OpenAPI document writes it (a string of 1 to 999999999)."""
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

    def __init__(self, tokens: PageTokens | None = None) -> None:
        self.tokens = tokens or PageTokens()

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
        return self.tokens.issue([getattr(row, _ROW_ATTR[page.order_by]), row.id], _scope(page))

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

    def _read(self, token: str, page: Page) -> tuple[int, int]:
        position = self.tokens.read(token, _scope(page), "nextPageToken")
        if (not isinstance(position, list) or len(position) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in position)):
            raise InvalidInput(f"nextPageToken {token[:80]!r} does not hold a position in this list. "
                               "Start again without nextPageToken.")
        return position[0], position[1]


def _scope(page: Page) -> str:
    return "\n".join(("registry", page.order_by, str(page.descending), page.scope))


def _page_size(raw: str | None) -> int:
    """Upstream's pattern, ``^[1-9][0-9]{0,8}$``; a page holds at most :data:`MAX_PAGE_SIZE` items whatever is
    asked (the reply's ``pageSize`` says so, and ``nextPageToken`` leads to the rest)."""
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    if not PAGE_SIZE.fullmatch(raw):
        raise InvalidInput(f"pageSize {raw[:40]!r} is not valid; use a whole number from 1 to 999999999 "
                           f"(a page holds at most {MAX_PAGE_SIZE} items).")
    return min(int(raw), MAX_PAGE_SIZE)
