"""The replicas' Pods (:mod:`kfbox.serving.pods`) as the Kubernetes API server serves core/v1 pods::

    GET    /api/v1/pods, /api/v1/namespaces/{ns}/pods[/{name}]   list, get, watch; labelSelector, fieldSelector
                                                                metadata.{name,namespace}, status.phase, spec.nodeName
    GET    /api/v1/namespaces/{ns}/pods/{name}/log              the replica's log (tailLines, limitBytes, follow)
    DELETE /api/v1/namespaces/{ns}/pods/{name}                  stop the replica: its pool starts a new one
    POST, PUT, PATCH (and DELETE of the collection)             405: change the InferenceService instead
    GET    /apis/metrics.k8s.io/v1beta1/...pods                 their CPU and memory (kfbox.serving.pod_metrics)

``kubectl get pods`` gets the API server's Table, ``kubectl logs`` the replica's own log file (no other path is
ever read: the file is the one its process writes), ``kubectl delete pod`` the Pod as it was, marked for
deletion, while the replica drains and stops. ``?watch=true`` streams their changes (:class:`PodWatch`: within
a fraction of a second).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from kfbox.serving.kube_api import KubeNotFound, KubeStatus, bad_request
from kfbox.serving.listing import list_or_watch, list_routes
from kfbox.serving.owned import ISVC_LABEL
from kfbox.serving.pod_metrics import metrics_router
from kfbox.serving.pods import COLUMNS, FIELDS, PodReplica, PodWatch, cells
from kfbox.serving.printer import table, wants_table
from kfbox.serving.raw import CONTAINER
from kfbox.serving.resources import InferenceServices

FOLLOW_POLL = 0.2
"""Seconds between looks at a followed log for new lines."""
GRACE_SECONDS = 30


def _number(query: dict[str, str], key: str) -> int | None:
    value = query.get(key)
    if value is None:
        return None
    if not value.isdigit():
        raise bad_request(f"{key} {value!r} must be a whole number >= 0.")
    return int(value)


def _tail(data: bytes, lines: int | None) -> bytes:
    if lines is None:
        return data
    if lines == 0:
        return b""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)


def pods_router(res: InferenceServices) -> APIRouter:
    router = APIRouter(tags=["kubernetes pods"], include_in_schema=False)
    manager = res.manager
    kind = ("Pod", "v1")
    watch = PodWatch(manager)

    def listing(request: Request, namespace: str | None) -> Any:
        answer = list_or_watch(request, namespace, watch.objects, watch.log, watch.version, kind,
                               (COLUMNS, cells), fields=FIELDS)
        if isinstance(answer, StreamingResponse):  # a watch: the pods are looked at while it is open
            answer.body_iterator = watch.watched(answer.body_iterator)
        return answer

    def find(namespace: str, name: str) -> PodReplica:
        for found in watch.refresh():
            if found.pod["metadata"]["namespace"] == namespace and found.pod["metadata"]["name"] == name:
                return found
        raise KubeNotFound(404, "NotFound", f'pods "{name}" not found in namespace {namespace}: kfbox shows one '
                           "per running replica of an InferenceService; list them with: kubectl get pods -n "
                           f"{namespace} -l {ISVC_LABEL}=NAME", name=name, kind="pods", group="")

    list_routes(router, "/api/v1", "pods", listing)

    @router.get("/api/v1/namespaces/{namespace}/pods/{name}")
    async def get(namespace: str, name: str, request: Request) -> Any:
        obj = find(namespace, name).pod
        return table([obj], None, COLUMNS, cells) if wants_table(request.headers.get("accept")) else obj

    @router.get("/api/v1/namespaces/{namespace}/pods/{name}/log")
    async def log(namespace: str, name: str, request: Request) -> Response:
        query = dict(request.query_params)
        found = find(namespace, name)
        container = query.get("container")
        if container not in (None, "", CONTAINER):
            raise bad_request(f"container {container} is not valid for pod {name}")
        if query.get("previous", "").lower() in ("true", "1"):
            raise bad_request(f'previous terminated container "{CONTAINER}" in pod "{name}" not found')
        lines, limit = _number(query, "tailLines"), _number(query, "limitBytes")
        path = found.replica.child.log_path
        everything = await asyncio.to_thread(_read, path, 0)
        data = _tail(everything, lines)
        if query.get("follow", "").lower() not in ("true", "1"):
            return Response(data[:limit] if limit is not None else data, media_type="text/plain")
        return StreamingResponse(_follow(found, path, data, len(everything), request), media_type="text/plain")

    @router.delete("/api/v1/namespaces/{namespace}/pods/{name}")
    async def delete(namespace: str, name: str) -> dict[str, Any]:
        found = find(namespace, name)
        found.pool.delete(found.replica)
        watch.refresh()  # its DELETED event
        manager.wake()
        obj = found.pod
        now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=GRACE_SECONDS)
        obj["metadata"].update(deletionTimestamp=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               deletionGracePeriodSeconds=GRACE_SECONDS)
        return obj

    @router.api_route("/api/v1/pods", methods=["POST", "PUT", "PATCH", "DELETE"])
    @router.api_route("/api/v1/namespaces/{namespace}/pods", methods=["POST", "PUT", "PATCH", "DELETE"])
    @router.api_route("/api/v1/namespaces/{namespace}/pods/{name}", methods=["POST", "PUT", "PATCH"])
    async def refuse_write(request: Request) -> None:
        namespace = request.path_params.get("namespace", "NAMESPACE")
        raise KubeStatus(405, "MethodNotAllowed", f"{request.method} is not supported for pods: kfbox runs one per "
                         "replica of an InferenceService. Change that instead: kubectl edit isvc NAME -n "
                         f"{namespace} (or delete one pod to restart it: kubectl delete pod POD)",
                         kind="pods", group="")

    router.routes.extend(metrics_router(watch).routes)  # kubectl top pods: the same Pods' usage
    return router


def _read(path: Path, offset: int) -> bytes:
    """The log from ``offset`` on (empty while the replica has written nothing yet)."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            return log.read()
    except FileNotFoundError:
        return b""


async def _follow(found: PodReplica, path: Path, first: bytes, offset: int,
                  request: Request) -> AsyncIterator[bytes]:
    """The log so far (``first``, read up to ``offset``), then what the replica appends, until it is gone from its
    pool or the client leaves."""
    if first:
        yield first
    while found.replica in found.pool.replicas and found.replica.child.alive:
        if await request.is_disconnected():
            return
        await asyncio.sleep(FOLLOW_POLL)
        more = await asyncio.to_thread(_read, path, offset)
        if more:
            offset += len(more)
            yield more
