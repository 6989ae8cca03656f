"""A kind's list and watch, as the Kubernetes API server answers ``GET .../<plural>``: one function for the
InferenceServices and for the objects shown for their predictors (:mod:`kfbox.serving.owned`).

Both read ``labelSelector`` and ``fieldSelector`` (a ``limit`` must be a whole number; the list is never
cut, which a Kubernetes client accepts); ``?watch=true`` streams the kind's :class:`EventLog`
(:func:`kfbox.serving.watch.stream`), else the list carries the newest resourceVersion it saw; either comes as
kubectl's Table when asked for one.

:func:`list_routes` adds a kind's two list routes (every namespace, one namespace) to a router.

Example::

    return list_or_watch(request, namespace, res.objects, res.log, res.log.latest, (KIND, API_VERSION))
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from kfbox.serving.kube_api import bad_request
from kfbox.serving.printer import Column, table, table_event, wants_table
from kfbox.serving.selectors import FIELDS, field_selector, label_selector
from kfbox.serving.watch import EventLog, WatchQuery, stream, watching

Listing = Callable[[Request, str | None], Any]
"""A kind's list-or-watch answer for a namespace (None: every namespace)."""
Objects = Callable[[str | None], list[dict[str, Any]]]
"""The kind's objects in a namespace (None: every namespace)."""
TableForm = tuple[list[Column], Callable[[dict[str, Any]], list[Any]]]
"""A kind's Table columns and the cells of one object; None: the InferenceServices'."""


def list_or_watch(request: Request, namespace: str | None, objects: Objects, log: EventLog, floor: int,
                  kind: tuple[str, str], table_form: TableForm | None = None,
                  fields: tuple[str, ...] = FIELDS) -> Any:
    """The list (``kind`` is (Kind, apiVersion); its resourceVersion at least ``floor``) or, with ``?watch``, the
    stream of ``log`` from the version asked for."""
    q = request.query_params
    limit = q.get("limit")
    if limit is not None and not limit.isdigit():  # the list is never cut (no continue token): only checked
        raise bad_request(f"limit {limit!r} must be a whole number >= 0.")
    matches_labels = label_selector(q.get("labelSelector"))
    matches_fields = field_selector(q.get("fieldSelector"), fields)

    def matches(obj: dict[str, Any]) -> bool:
        inside = namespace is None or obj["metadata"]["namespace"] == namespace
        return inside and matches_labels(obj) and matches_fields(obj)

    as_table = wants_table(request.headers.get("accept"))
    if watching(q):
        query = WatchQuery.parse(q)
        initial = [o for o in objects(namespace) if matches(o)] if query.since == 0 else None
        since = log.latest if query.since == 0 else query.since
        render = None if not as_table else (
            functools.partial(table_event, columns=table_form[0], cells=table_form[1]) if table_form else table_event)
        return StreamingResponse(stream(log, initial, since, matches, query.timeout, query.bookmarks, render, kind),
                                 media_type="application/json")
    items = [o for o in objects(namespace) if matches(o)]
    latest = str(max([floor, *(int(o["metadata"]["resourceVersion"]) for o in items)]))
    if as_table:
        return table(items, latest, *table_form) if table_form else table(items, latest)
    return {"apiVersion": kind[1], "kind": kind[0] + "List", "metadata": {"resourceVersion": latest}, "items": items}


def list_routes(router: APIRouter, base: str, plural: str, listing: Listing) -> None:
    """The two list routes of a namespaced kind, as the API server has them: ``GET {base}/{plural}`` (every
    namespace) and ``GET {base}/namespaces/{namespace}/{plural}``, both answered by ``listing``."""
    async def list_all(request: Request) -> Any:
        return listing(request, None)

    async def list_namespaced(namespace: str, request: Request) -> Any:
        return listing(request, namespace)

    router.add_api_route(f"{base}/{plural}", list_all, methods=["GET"])
    router.add_api_route(f"{base}/namespaces/{{namespace}}/{plural}", list_namespaced, methods=["GET"])
