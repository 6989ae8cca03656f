"""What ``kubectl`` asks before it touches a resource: discovery, version, OpenAPI, namespaces.

    GET /api, /api/v1                        core group: ``namespaces``, ``events`` (kfbox.serving.event_routes),
                                             ``pods`` and ``pods/log`` (kfbox.serving.pod_routes)
    GET|POST /api/v1/namespaces, GET /api/v1/namespaces/{name}
    GET /apis, /apis/serving.kserve.io, /apis/serving.kserve.io/v1beta1
    GET /apis/serving.knative.dev, /apis/serving.knative.dev/v1   ``services`` (ksvc), read-only: get, list, watch
    GET /apis/apps, /apis/apps/v1                                  ``deployments`` (deploy), ``replicasets`` (rs),
                                                                   read-only
    GET /apis/autoscaling, /apis/autoscaling/v1, .../v2            ``horizontalpodautoscalers`` (hpa), read-only
    GET /apis/metrics.k8s.io, /apis/metrics.k8s.io/v1beta1           ``pods`` (PodMetrics): get, list (kubectl top)
    GET /version
    GET /openapi/v2, /openapi/v3, /openapi/v3/apis/serving.kserve.io/v1beta1, /openapi/v3/api/v1, and
        /openapi/v3/apis/{apps/v1,autoscaling/v2,autoscaling/v1,serving.knative.dev/v1} (kfbox.serving.kube_openapi)

Modern kubectl first asks for *aggregated* discovery (``Accept:
application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``); kfbox answers the
legacy documents with ``Content-Type: application/json``, which kubectl takes as "not
aggregated" and reads group by group. ``/openapi/v2`` is JSON only: kubectl asks for protobuf
there and gets 406, which it treats as "no v2 schema" (it uses v3 for ``explain`` and apply).
Namespaces are lenient: ``default`` always exists, and so does any namespace that holds an
InferenceService.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import hashlib
import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from kfbox import __version__
from kfbox.apis import KNATIVE_API_VERSION, KNATIVE_GROUP, KNATIVE_VERSION
from kfbox.apis import SERVING_API_VERSION as API_VERSION
from kfbox.serving.kube_api import KubeStatus, bad_request, not_found
from kfbox.serving.kube_openapi import KINDS, document
from kfbox.serving.openapi import core_document, serving_document, swagger_v2
from kfbox.serving.resources import InferenceServices
from kfbox.serving.spec import KIND, NAMESPACE_RE

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
VERBS = ["delete", "get", "list", "patch", "create", "update", "watch"]
KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kfbox", "gitCommit": __version__,
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
                "compiler": "kfbox", "platform": "linux/amd64"}


def _group(name: str = GROUP, group_version: str = API_VERSION, version: str = VERSION) -> dict[str, Any]:
    versions = {"groupVersion": group_version, "version": version}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": [versions],
            "preferredVersion": versions}


def _knative_group() -> dict[str, Any]:
    """KServe's Knative Services (kfbox.serving.knative): read-only: get, list and watch."""
    return _group(KNATIVE_GROUP, KNATIVE_API_VERSION, KNATIVE_VERSION)


def _apps_group() -> dict[str, Any]:
    """KServe's Standard-mode Deployments (kfbox.serving.raw) and their ReplicaSets (kfbox.serving.replica_sets):
    read-only: get, list and watch."""
    return _group("apps", "apps/v1", "v1")


def _metrics_group() -> dict[str, Any]:
    """metrics-server's API: the replicas' PodMetrics (kfbox.serving.pod_metrics), for ``kubectl top pods``."""
    return _group("metrics.k8s.io", "metrics.k8s.io/v1beta1", "v1beta1")


def _autoscaling_group() -> dict[str, Any]:
    """Their HorizontalPodAutoscalers, in both served versions; v2 preferred, as by Kubernetes 1.23 on."""
    v2, v1 = {"groupVersion": "autoscaling/v2", "version": "v2"}, {"groupVersion": "autoscaling/v1", "version": "v1"}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": "autoscaling", "versions": [v2, v1],
            "preferredVersion": v2}


def _read_only(group_version: str, name: str, singular: str, kind: str, shorts: list[str],
               categories: list[str]) -> dict[str, Any]:
    """The APIResourceList of one namespaced resource kfbox shows read-only (get, list, watch)."""
    resource = {"name": name, "singularName": singular, "namespaced": True, "kind": kind,
                "verbs": ["get", "list", "watch"], "shortNames": shorts, "categories": categories,
                "storageVersionHash": hashlib.sha256(f"{name}.{group_version}".encode()).hexdigest()[:11]}
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": [resource]}


def _stamp(created_ms: int) -> str:
    return datetime.datetime.fromtimestamp(created_ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def discovery_router(res: InferenceServices) -> APIRouter:
    router = APIRouter(tags=["kubernetes discovery"], include_in_schema=False)
    store = res.store

    @router.get("/api")
    async def core_versions() -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}

    @router.get("/api/v1")
    async def core_resources() -> dict[str, Any]:
        return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
             "verbs": ["create", "get", "list"], "shortNames": ["ns"]},
            {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event",
             "verbs": ["get", "list", "watch"], "shortNames": ["ev"]},
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
             "verbs": ["delete", "get", "list", "watch"], "shortNames": ["po"], "categories": ["all"]},
            {"name": "pods/log", "singularName": "", "namespaced": True, "kind": "Pod", "verbs": ["get"]}]}

    @router.get("/apis")
    async def groups() -> dict[str, Any]:
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            _group(), _knative_group(), _apps_group(), _autoscaling_group(), _metrics_group()]}

    @router.get("/apis/serving.kserve.io")
    async def group() -> dict[str, Any]:
        return _group()

    @router.get("/apis/serving.kserve.io/v1beta1")
    async def resources() -> dict[str, Any]:
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION, "resources": [
            {"name": "inferenceservices", "singularName": "inferenceservice", "namespaced": True, "kind": KIND,
             "verbs": VERBS, "shortNames": ["isvc"], "categories": ["all", "kserve"],
             "storageVersionHash": hashlib.sha256(b"inferenceservices").hexdigest()[:11]},
            {"name": "inferenceservices/status", "singularName": "", "namespaced": True, "kind": KIND,
             "verbs": ["get", "patch", "update"]},
        ]}

    @router.get("/apis/serving.knative.dev")
    async def knative_group() -> dict[str, Any]:
        return _knative_group()

    @router.get("/apis/serving.knative.dev/v1")
    async def knative_resources() -> dict[str, Any]:
        return _read_only(KNATIVE_API_VERSION, "services", "service", "Service", ["kservice", "ksvc"],
                          ["all", "knative", "serving"])

    @router.get("/apis/apps")
    async def apps_group() -> dict[str, Any]:
        return _apps_group()

    @router.get("/apis/apps/v1")
    async def apps_resources() -> dict[str, Any]:
        listing = _read_only("apps/v1", "deployments", "deployment", "Deployment", ["deploy"], ["all"])
        listing["resources"] += _read_only("apps/v1", "replicasets", "replicaset", "ReplicaSet", ["rs"],
                                           ["all"])["resources"]
        return listing

    @router.get("/apis/metrics.k8s.io")
    async def metrics_group() -> dict[str, Any]:
        return _metrics_group()

    @router.get("/apis/metrics.k8s.io/v1beta1")
    async def metrics_resources() -> dict[str, Any]:
        listing = _read_only("metrics.k8s.io/v1beta1", "pods", "", "PodMetrics", [], [])
        listing["resources"][0]["verbs"] = ["get", "list"]
        return listing

    @router.get("/apis/autoscaling")
    async def autoscaling_group() -> dict[str, Any]:
        return _autoscaling_group()

    def hpa_resources(version: str) -> dict[str, Any]:
        return _read_only(f"autoscaling/{version}", "horizontalpodautoscalers", "horizontalpodautoscaler",
                          "HorizontalPodAutoscaler", ["hpa"], ["all"])

    @router.get("/apis/autoscaling/v1")
    async def autoscaling_v1_resources() -> dict[str, Any]:
        return hpa_resources("v1")

    @router.get("/apis/autoscaling/v2")
    async def autoscaling_v2_resources() -> dict[str, Any]:
        return hpa_resources("v2")

    @router.get("/version")
    async def version() -> dict[str, Any]:
        return KUBE_VERSION

    @router.get("/openapi/v2")
    async def openapi_v2(request: Request) -> Response:
        accept = request.headers.get("accept", "")
        if "protobuf" in accept and "json" not in accept:
            return Response(status_code=406)
        return JSONResponse(swagger_v2())

    @router.get("/openapi/v3")
    async def openapi_v3_index() -> dict[str, Any]:
        paths = {}
        for path in OPENAPI_V3:
            digest = hashlib.sha512(json.dumps(_openapi_v3(path), sort_keys=True).encode()).hexdigest()[:32]
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
        return {"paths": paths}

    def openapi_v3_route(path: str) -> None:
        @router.get(f"/openapi/v3/{path}", name=f"openapi_v3_{path}")
        async def openapi_v3() -> dict[str, Any]:
            return _openapi_v3(path)

    for path in OPENAPI_V3:
        openapi_v3_route(path)

    # --- namespaces ----------------------------------------------------------------------
    async def namespaces() -> dict[str, dict[str, Any]]:
        rows = await asyncio.to_thread(store.namespaces)
        found: dict[str, dict[str, Any]] = {}
        for row in rows:
            found[row.name] = _namespace(row.name, row.uid, row.resource_version, row.created_ms,
                                         json.loads(row.labels))
        for name in {"default", *(ns for ns, _ in res.manager.deployments)} - set(found):
            found[name] = _namespace(name, "", 1, round(res.manager.platform.started_at * 1000), {})
        return found

    @router.get("/api/v1/namespaces")
    async def list_namespaces() -> dict[str, Any]:
        found = await namespaces()
        return {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": str(res.log.latest)},
                "items": [found[n] for n in sorted(found)]}

    @router.get("/api/v1/namespaces/{name}")
    async def get_namespace(name: str) -> dict[str, Any]:
        found = await namespaces()
        if name not in found:
            raise not_found(name, kind="namespaces", group="")
        return found[name]

    @router.post("/api/v1/namespaces", status_code=201)
    async def create_namespace(request: Request) -> JSONResponse:
        raw = await request.body()
        try:
            body = _protobuf_namespace(raw) if raw.startswith(PROTOBUF_MAGIC) else json.loads(raw)
        except (ValueError, IndexError) as exc:
            raise bad_request(f"the request body is not a valid Namespace (JSON or protobuf): {exc}") from exc
        meta = body.get("metadata") if isinstance(body, dict) else None
        name = (meta or {}).get("name")
        if not isinstance(name, str) or not NAMESPACE_RE.match(name):
            raise KubeStatus(422, "Invalid", f'Namespace "{name}" is invalid: metadata.name: must be a DNS label',
                             name=name if isinstance(name, str) else None, kind="Namespace", group="")
        if name in await namespaces():
            raise KubeStatus(409, "AlreadyExists", f'namespaces "{name}" already exists', name=name,
                             kind="namespaces", group="")
        labels = (meta or {}).get("labels") or {}
        row = await asyncio.to_thread(store.create_namespace, name, labels)
        return JSONResponse(_namespace(row.name, row.uid, row.resource_version, row.created_ms, labels),
                            status_code=201)

    return router


OPENAPI_V3 = ("apis/serving.kserve.io/v1beta1", *KINDS)
"""The group-versions ``/openapi/v3`` lists: the InferenceService's, and those of the read-only kinds."""


@functools.cache
def _openapi_v3(path: str) -> dict[str, Any]:
    """The OpenAPI v3 document of one group-version, built on its first request (start-up builds none)."""
    if path == "apis/serving.kserve.io/v1beta1":
        return serving_document()
    doc = document(path)
    if path == "api/v1":  # the Namespace beside the Pod
        core = core_document()
        doc = {**doc, "paths": {**core["paths"], **doc["paths"]},
               "components": {"schemas": {**core["components"]["schemas"], **doc["components"]["schemas"]}}}
    return doc


PROTOBUF_MAGIC = b"k8s\x00"


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """Length-delimited fields of a protobuf message (field number, bytes); other wire types skipped."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        value, shift = 0, 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 2:
            size = varint()
            out.append((field, data[i:i + size]))
            i += size
        elif wire == 0:
            varint()
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    return out


def _protobuf_namespace(raw: bytes) -> dict[str, Any]:
    """``kubectl create namespace`` sends protobuf (``runtime.Unknown`` around a ``Namespace``):
    read ``metadata.name`` (field 1) and ``metadata.labels`` (field 11) from it."""
    inner = dict(_fields(raw[len(PROTOBUF_MAGIC):])).get(2, b"")
    meta = dict(_fields(inner)).get(1, b"")
    name, labels = "", {}
    for field, value in _fields(meta):
        if field == 1:
            name = value.decode()
        elif field == 11:
            entry = dict(_fields(value))
            labels[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    return {"metadata": {"name": name, "labels": labels}}


def _namespace(name: str, uid: str, version: int, created_ms: int, labels: dict[str, str]) -> dict[str, Any]:
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name, "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_DNS, name + ".kfbox")),
                         "resourceVersion": str(version), "creationTimestamp": _stamp(created_ms),
                         "labels": {"kubernetes.io/metadata.name": name, **labels}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
