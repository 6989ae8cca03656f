"""Model Registry calls over kfbox's :class:`~kfbox.client.ApiClient`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kfbox.client.api import ApiClient

PAGE_SIZE = "1000"


def pages(api: ApiClient, path: str, **params: str) -> Iterator[dict[str, Any]]:
    """Every item of a registry list, following ``nextPageToken``."""
    token = ""
    while True:
        page = api.get(path, params={**params, "pageSize": PAGE_SIZE, "nextPageToken": token})
        yield from page["items"]
        token = page["nextPageToken"]
        if not token:
            return
