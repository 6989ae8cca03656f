"""What the objects KServe's controller writes for an InferenceService's predictor share, and their read-only routes.

On a cluster KServe's controller writes ``<isvc>-predictor`` objects for each InferenceService, by its deployment
mode (annotation ``serving.kserve.io/deploymentMode``): a Knative Service (``Knative``, formerly ``Serverless``;
:mod:`kfbox.serving.knative`) or a Deployment and a HorizontalPodAutoscaler (``Standard``, formerly
``RawDeployment``; :mod:`kfbox.serving.raw`). They share their metadata (KServe's ``buildObjectMeta``: labels of
the isvc and the predictor, the isvc's annotations less KServe's disallowed ones, an owner reference to the isvc)
and, here, their routes: :func:`owned_routes` serves one :class:`OwnedKind` read-only, get, list
(``labelSelector``, ``fieldSelector``, server-side Tables) and watch, with 405 MethodNotAllowed for writes
(``/scale`` too). A :class:`Projection` derives the kind's watch events from the InferenceServices' own: each
isvc event becomes the same event of its ``<isvc>-predictor`` object, built as the event is recorded (so a
replay shows the object as it was); an unchanged object is skipped, and one that stops existing (the isvc
deleted, or moved to another deployment mode) is ``DELETED`` as last built.

Example::

    router = APIRouter()
    owned_routes(router, res, OwnedKind(DEPLOYMENTS_API, "deployments", "Deployment", "deploy", COLUMNS, cells, build))
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

from kfbox.apis import SERVING_API_VERSION
from kfbox.serving.deployment import Deployment
from kfbox.serving.kube_api import KubeNotFound, KubeStatus
from kfbox.serving.listing import list_or_watch, list_routes
from kfbox.serving.printer import Column, table, wants_table
from kfbox.serving.resources import InferenceServices
from kfbox.serving.scaling_spec import annotations_of, deployment_mode
from kfbox.serving.spec import KIND as ISVC_KIND
from kfbox.serving.spec import SHORTHAND
from kfbox.serving.store import ServiceRecord
from kfbox.serving.watch import EventLog

SUFFIX = "-predictor"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
DISALLOWED = frozenset({"autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale", SOURCE_URI,
                        "kubectl.kubernetes.io/last-applied-configuration", "modelFormat"})
"""KServe's ServiceAnnotationDisallowedList: isvc annotations that never reach the predictor's objects."""


def strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def record_mode(record: ServiceRecord) -> str:
    """The InferenceService's deployment mode (:func:`kfbox.serving.scaling_spec.deployment_mode`)."""
    return deployment_mode(annotations_of(record.manifest))


def raw_predictor(record: ServiceRecord) -> dict[str, Any]:
    """``spec.predictor`` as applied."""
    return (record.manifest.get("spec") or {}).get("predictor") or {}


def model_container(record: ServiceRecord) -> dict[str, Any]:
    """The predictor's model as applied: ``spec.predictor.model`` or a framework's shorthand (``sklearn``...)."""
    predictor = raw_predictor(record)
    return next((predictor[k] for k in ("model", *SHORTHAND) if isinstance(predictor.get(k), dict)), {})


def component_labels(record: ServiceRecord) -> dict[str, str]:
    """The isvc's labels, the predictor's over them, and KServe's two (its ``buildObjectMeta``)."""
    meta = record.manifest.get("metadata") or {}
    return {**strings(meta.get("labels")), **strings(raw_predictor(record).get("labels")),
            ISVC_LABEL: record.name, "component": "predictor"}


def component_annotations(record: ServiceRecord, number: int | None = None) -> dict[str, str]:
    """The isvc's annotations less the disallowed ones, the storage initializer's source URI (of revision
    ``number``; None: the latest), then the predictor's own annotations (less the disallowed ones) over them."""
    isvc = strings((record.manifest.get("metadata") or {}).get("annotations"))
    annotations = {k: v for k, v in isvc.items() if k not in DISALLOWED}
    storage_uri = record.revisions[record.latest if number is None else number].storage_uri
    if storage_uri is not None:
        annotations[SOURCE_URI] = storage_uri
    annotations.update({k: v for k, v in strings(raw_predictor(record).get("annotations")).items()
                        if k not in DISALLOWED})
    return annotations


def object_uid(record: ServiceRecord, kind: str) -> str:
    """The uid of the isvc's ``<isvc>-predictor`` object of ``kind``: its own, the same across restarts."""
    suffix = "predictor" if kind == "Service" else f"predictor/{kind}"  # the Knative Service's uid as it was
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfbox:{record.uid}/{suffix}"))


def object_meta(record: ServiceRecord, kind: str, labels: dict[str, str]) -> dict[str, Any]:
    """``metadata`` of the isvc's ``<isvc>-predictor`` object of ``kind``: a uid of its own, the isvc's
    resourceVersion (it changes whenever its InferenceService does) and creation time, owned by the isvc."""
    return {
        "name": record.name + SUFFIX, "namespace": record.namespace, "uid": object_uid(record, kind),
        "resourceVersion": str(record.resource_version),
        "creationTimestamp": datetime.datetime.fromtimestamp(record.created_ms / 1000, datetime.UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "labels": labels,
        "ownerReferences": [{"apiVersion": SERVING_API_VERSION, "kind": ISVC_KIND, "name": record.name,
                             "uid": record.uid, "controller": True, "blockOwnerDeletion": True}],
    }


@dataclasses.dataclass(frozen=True)
class OwnedKind:
    """One kind of object KServe writes per predictor, served read-only under ``api`` (``/apis/GROUP/VERSION``)."""

    api: str
    plural: str
    kind: str
    short: str
    """kubectl's short name, for the hints in error messages."""
    columns: list[Column]
    cells: Callable[[dict[str, Any]], list[Any]]
    build: Callable[[Deployment], list[dict[str, Any]]]
    """The objects of this kind for one InferenceService: its ``<isvc>-predictor`` (:func:`single`), none where
    KServe writes none of this kind for it, or several (a Deployment's ReplicaSets)."""

    @property
    def group(self) -> str:
        return self.api.split("/")[2]

    @property
    def api_version(self) -> str:
        return self.api.removeprefix("/apis/")


def single(build: Callable[[Deployment], dict[str, Any] | None]) -> Callable[[Deployment], list[dict[str, Any]]]:
    """An :attr:`OwnedKind.build` of a kind with at most one object per InferenceService."""
    def built(deployment: Deployment) -> list[dict[str, Any]]:
        obj = build(deployment)
        return [] if obj is None else [obj]
    return built


def _without_version(obj: dict[str, Any]) -> str:
    meta = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
    return json.dumps({**obj, "metadata": meta}, sort_keys=True)


class Projection:
    """One kind's watch events, derived from the InferenceServices' as each is recorded (in :attr:`log`, whose
    versions are the isvc events'; older ones than its start are 410 Expired)."""

    def __init__(self, res: InferenceServices, build: Callable[[Deployment], list[dict[str, Any]]]) -> None:
        self.deployments = res.manager.deployments
        self.build = build
        self.log = EventLog(res.log.latest)
        self.last: dict[tuple[str, str], dict[str, tuple[str, dict[str, Any]]]] = {}
        """Each InferenceService's objects as last sent, by name, with their JSON less the resourceVersion."""
        for key, deployment in self.deployments.items():
            self.last[key] = {obj["metadata"]["name"]: (_without_version(obj), obj) for obj in build(deployment)}
        res.followers.append(self.follow)

    def follow(self, event: str, key: tuple[str, str], version: int) -> None:
        deployment = self.deployments.get(key) if event != "DELETED" else None
        objects = self.build(deployment) if deployment is not None else []
        previous = self.last.pop(key, {})
        now = {obj["metadata"]["name"]: (_without_version(obj), obj) for obj in objects}
        if now:
            self.last[key] = now
        for name, (_, gone) in previous.items():
            if name not in now:
                self.log.record("DELETED", {**gone, "metadata": {**gone["metadata"],
                                                                 "resourceVersion": str(version)}}, version)
        for name, (shown, obj) in now.items():
            before = previous.get(name)
            if before is None or before[0] != shown:
                self.log.record("MODIFIED" if before is not None else "ADDED", obj, version)


def _read_only(kind: OwnedKind, namespace: str, name: str | None = None) -> KubeStatus:
    """405: KServe's controller owns these objects; the InferenceService is what a user changes."""
    what = f"{kind.plural}.{kind.group}"
    if name is None:
        return KubeStatus(405, "MethodNotAllowed", f"{what} are read-only here: kfbox shows the ones KServe writes "
                          "for the predictor of each InferenceService. Create or delete the InferenceService "
                          f"instead: kubectl apply -f MANIFEST -n {namespace}", kind=kind.plural, group=kind.group)
    owner = name[:name.rfind(SUFFIX)] if SUFFIX in name else name  # <isvc>-predictor[-<hash>]
    return KubeStatus(405, "MethodNotAllowed", f'{what} "{name}" is read-only here: kfbox shows it for the '
                      f'predictor of InferenceService "{owner}". Change that instead: kubectl edit isvc {owner} -n '
                      f"{namespace}", name=name, kind=kind.plural, group=kind.group)


def owned_routes(router: APIRouter, res: InferenceServices, kind: OwnedKind) -> None:
    """Add ``kind``'s get, list and watch routes (namespace and cluster scope) and its 405s for writes to
    ``router``."""
    manager = res.manager
    what = f"{kind.plural}.{kind.group}"
    projection = Projection(res, kind.build)

    def shown(namespace: str | None) -> list[dict[str, Any]]:
        return [obj for key in sorted(manager.deployments) if namespace is None or key[0] == namespace
                for obj in kind.build(manager.deployments[key])]

    def listing(request: Request, namespace: str | None) -> Any:
        return list_or_watch(request, namespace, shown, projection.log, res.log.latest, (kind.kind, kind.api_version),
                             (kind.columns, kind.cells))

    async def get(namespace: str, name: str, request: Request) -> Any:
        owners = (d for (ns, isvc), d in manager.deployments.items()
                  if ns == namespace and name.startswith(isvc + SUFFIX))  # <isvc>-predictor[-<hash>]
        obj = next((o for d in owners for o in kind.build(d) if o["metadata"]["name"] == name), None)
        if obj is None:
            raise KubeNotFound(404, "NotFound", f'{what} "{name}" not found in namespace {namespace}: kfbox shows '
                               f"those KServe writes for the predictor of each InferenceService, named <isvc>{SUFFIX}"
                               f"; list them with: kubectl get {kind.short} -n {namespace}", name=name,
                               kind=kind.plural, group=kind.group)
        return table([obj], None, kind.columns, kind.cells) if wants_table(request.headers.get("accept")) else obj

    async def write_collection(namespace: str) -> None:
        raise _read_only(kind, namespace)

    async def write(namespace: str, name: str) -> None:
        raise _read_only(kind, namespace, name)

    collection = f"{kind.api}/namespaces/{{namespace}}/{kind.plural}"
    list_routes(router, kind.api, kind.plural, listing)
    router.add_api_route(collection + "/{name}", get, methods=["GET"])
    router.add_api_route(collection, write_collection, methods=["POST", "DELETE"])
    router.add_api_route(collection + "/{name}", write, methods=["PUT", "PATCH", "DELETE"])
    router.add_api_route(collection + "/{name}/scale", write, methods=["PUT", "PATCH"])  # kubectl scale
