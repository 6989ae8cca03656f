"""Server-side printing: the ``Table`` kubectl asks for (``Accept: application/json;as=Table;g=meta.k8s.io``).

The columns are KServe's CRD ``additionalPrinterColumns``, so ``kubectl get isvc`` shows
``NAME URL READY PREV LATEST PREVROLLEDOUTREVISION LATESTREADYREVISION AGE`` as on a cluster.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

Column = tuple[str, str, str]
"""A column's name, type and format, as a CRD's ``additionalPrinterColumns`` declares it."""
COLUMNS = [("Name", "string", "name"), ("URL", "string", ""), ("Ready", "string", ""), ("Prev", "integer", ""),
           ("Latest", "integer", ""), ("PrevRolledoutRevision", "string", ""), ("LatestReadyRevision", "string", ""),
           ("Age", "date", "")]


def wants_table(accept: str | None) -> bool:
    return bool(accept) and "as=Table" in str(accept) and "g=meta.k8s.io" in str(accept)


def age(stamp: str | None) -> str:
    """kubectl's short age: 45s, 12m, 5h, 3d."""
    if not stamp:
        return "<unknown>"
    then = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = max(0, int((datetime.datetime.now(datetime.UTC) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _cells(obj: dict[str, Any]) -> list[Any]:
    status = obj.get("status") or {}
    ready = next((c.get("status") for c in status.get("conditions", []) if c.get("type") == "Ready"), None)
    traffic = (status.get("components") or {}).get("predictor", {}).get("traffic", [])
    prev = next((t for t in traffic if t.get("tag") == "prev"), None)
    latest = next((t for t in traffic if t.get("latestRevision")), None)
    return [obj["metadata"]["name"], status.get("url"), ready, prev and prev.get("percent"),
            latest and latest.get("percent"), prev and prev.get("revisionName"),
            latest and latest.get("revisionName"), age(obj["metadata"].get("creationTimestamp"))]


def _row(obj: dict[str, Any], cells: Callable[[dict[str, Any]], list[Any]]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {"cells": cells(obj), "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                             "metadata": meta}}


def table(objects: list[dict[str, Any]], resource_version: str | None = None, columns: list[Column] = COLUMNS,
          cells: Callable[[dict[str, Any]], list[Any]] = _cells) -> dict[str, Any]:
    """A ``Table`` of ``objects``: InferenceServices by default, or another kind's ``columns`` and ``cells``."""
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version} if resource_version else {},
            "columnDefinitions": [{"name": name, "type": kind, "format": fmt, "description": name,
                                   "priority": 0} for name, kind, fmt in columns],
            "rows": [_row(o, cells) for o in objects]}


def table_event(event: dict[str, Any], columns: list[Column] = COLUMNS,
                cells: Callable[[dict[str, Any]], list[Any]] = _cells) -> dict[str, Any]:
    """A watch event whose object is a one-row Table (bookmarks and errors pass through)."""
    if event["type"] in ("BOOKMARK", "ERROR"):
        return event
    return {"type": event["type"], "object": table([event["object"]], None, columns, cells)}
