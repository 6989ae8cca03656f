"""The Events API, read-only (get, list, watch), as the Kubernetes API server serves core/v1 events::

    GET /api/v1/events, /api/v1/namespaces/{ns}/events[/{name}]
        fieldSelector: involvedObject.{name,namespace,kind,uid,apiVersion}, metadata.{name,namespace}, type, reason

``kubectl describe isvc`` lists them by ``involvedObject`` fields; ``kubectl get events`` asks for a Table and gets
the API server's columns. Writes answer 405: only kfbox records events (:mod:`kfbox.serving.events`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kfbox.serving.events import EventRecorder
from kfbox.serving.kube_api import KubeStatus
from kfbox.serving.listing import list_or_watch, list_routes
from kfbox.serving.printer import Column, age

FIELDS = ("metadata.name", "metadata.namespace", "involvedObject.name", "involvedObject.namespace",
          "involvedObject.kind", "involvedObject.uid", "involvedObject.apiVersion", "type", "reason")
COLUMNS: list[Column] = [("Last Seen", "string", ""), ("Type", "string", ""), ("Reason", "string", ""),
                         ("Object", "string", ""), ("Message", "string", "")]
"""The API server's Table for events (its narrow columns), so ``kubectl get events`` prints as on a cluster."""


def _cells(event: dict[str, Any]) -> list[Any]:
    involved = event["involvedObject"]
    return [age(event.get("lastTimestamp")), event["type"], event["reason"],
            f"{involved['kind'].lower()}/{involved['name']}", event["message"]]


def events_router(recorder: EventRecorder) -> APIRouter:
    router = APIRouter(tags=["kubernetes events"], include_in_schema=False)
    kind = ("Event", "v1")

    def listing(request: Request, namespace: str | None) -> Any:
        return list_or_watch(request, namespace, recorder.objects, recorder.log, recorder.latest, kind,
                             (COLUMNS, _cells), fields=FIELDS)

    list_routes(router, "/api/v1", "events", listing)

    @router.get("/api/v1/namespaces/{namespace}/events/{name}")
    async def get(namespace: str, name: str) -> dict[str, Any]:
        return recorder.get(namespace, name)

    @router.api_route("/api/v1/events", methods=["POST", "PUT", "PATCH", "DELETE"])
    @router.api_route("/api/v1/namespaces/{namespace}/events", methods=["POST", "PUT", "PATCH", "DELETE"])
    @router.api_route("/api/v1/namespaces/{namespace}/events/{name}", methods=["POST", "PUT", "PATCH", "DELETE"])
    async def refuse_write(request: Request) -> None:
        raise KubeStatus(405, "MethodNotAllowed", f"{request.method} is not supported: kfbox records events itself "
                         "and serves them read-only (get, list, watch)", kind="events", group="")

    return router
