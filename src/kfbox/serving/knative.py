"""The Knative Service KServe's controller makes for each InferenceService's predictor, read-only.

    GET /apis/serving.knative.dev/v1/services                              list, all namespaces
    GET /apis/serving.knative.dev/v1/namespaces/{ns}/services              list (labelSelector, fieldSelector)
    GET /apis/serving.knative.dev/v1/namespaces/{ns}/services/{name}       get: ``<isvc>-predictor``
    POST, PUT, PATCH, DELETE, ?watch=true                                   405 MethodNotAllowed

On a cluster in Serverless mode KServe writes ``<isvc>-predictor`` (``serving.knative.dev/v1``
``Service``) and Knative reports its status; clients such as KServe's own e2e tests read the
autoscaling annotations of ``spec.template`` there. kfbox runs no Knative, so it shows each served
InferenceService's predictor as that object, built by KServe's rules (its ksvc reconciler and
``SetAutoScalingAnnotations``): labels, the isvc's annotations less KServe's disallowed ones,
``autoscaling.knative.dev/class: kpa.autoscaling.knative.dev``, ``metric`` and ``target`` only when
the predictor sets ``scaleMetric`` / ``scaleTarget``, ``min-scale`` (default 1), ``max-scale`` unless
``maxReplicas`` is 0 or unset, and ``spec.traffic`` as KServe writes it. Its status is the
predictor's (:func:`kfbox.serving.status.predictor_state`, the rule the InferenceService's status
uses). No pod template: kfbox runs no containers. Writes are 405 MethodNotAllowed: the
InferenceService owns the object.

Example::

    kubectl get ksvc -n kubeflow-user-example-com
    kubectl get ksvc iris-predictor -o jsonpath='{.spec.template.metadata.annotations}'
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from fastapi import APIRouter, Request

from kfbox.apis import KNATIVE, KNATIVE_API_VERSION, KNATIVE_GROUP, SERVING_API_VERSION
from kfbox.serving.deployment import Deployment
from kfbox.serving.kube_api import KubeNotFound, KubeStatus
from kfbox.serving.printer import Column, table, wants_table
from kfbox.serving.resources import InferenceServices
from kfbox.serving.selectors import field_selector, label_selector
from kfbox.serving.spec import KIND as ISVC_KIND
from kfbox.serving.status import condition, predictor_state
from kfbox.serving.store import revision_name

KIND = "Service"
PLURAL = "services"
SUFFIX = "-predictor"
AUTOSCALING = "autoscaling.knative.dev/"
KPA = "kpa.autoscaling.knative.dev"
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"
ISVC_LABEL = "serving.kserve.io/inferenceservice"
DISALLOWED = frozenset({AUTOSCALING + "min-scale", AUTOSCALING + "max-scale", SOURCE_URI,
                        "kubectl.kubernetes.io/last-applied-configuration", "modelFormat"})
"""KServe's ServiceAnnotationDisallowedList: isvc annotations that never reach the Knative Service."""
MANAGED = ("serving.knative.dev/rollout-duration", "serving.knative.openshift.io/enablePassthrough")
"""Moved from the revision template to the Service's own metadata, as KServe's reconciler does."""
TEMPLATE_LABELS_DISALLOWED = frozenset({"networking.knative.dev/visibility"})
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
COLUMNS: list[Column] = [("Name", "string", "name"), ("URL", "string", ""), ("LatestCreated", "string", ""),
                         ("LatestReady", "string", ""), ("Ready", "string", ""), ("Reason", "string", "")]
"""Knative's CRD ``additionalPrinterColumns`` for ``kubectl get ksvc``."""


def _strings(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _annotations(deployment: Deployment) -> dict[str, str]:
    """``spec.template.metadata.annotations``, by KServe's predictor reconciler and SetAutoScalingAnnotations."""
    record = deployment.record
    spec = record.revisions[record.latest]
    raw = (record.manifest.get("spec") or {}).get("predictor") or {}
    isvc = _strings((record.manifest.get("metadata") or {}).get("annotations"))
    annotations = {k: v for k, v in isvc.items() if k not in DISALLOWED}
    if spec.storage_uri is not None:
        annotations[SOURCE_URI] = spec.storage_uri
    annotations.update({k: v for k, v in _strings(raw.get("annotations")).items() if k not in DISALLOWED})
    annotations.setdefault(AUTOSCALING + "class", KPA)
    if raw.get("scaleTarget") is not None:
        annotations[AUTOSCALING + "target"] = str(spec.scale_target)
    if raw.get("scaleMetric") is not None:
        annotations[AUTOSCALING + "metric"] = spec.scale_metric
    annotations[AUTOSCALING + "min-scale"] = str(spec.min_replicas)
    if raw.get("maxReplicas"):  # 0 or unset: Knative's global maximum, so KServe writes none
        annotations[AUTOSCALING + "max-scale"] = str(spec.max_replicas)
    return annotations


def _spec_traffic(deployment: Deployment, annotations: dict[str, str]) -> list[dict[str, Any]]:
    """``spec.traffic`` as KServe writes it: the latest revision takes everything, or the canary percent with
    the last rolled-out revision (tag ``prev``) taking the rest."""
    record = deployment.record
    latest: dict[str, Any] = {"latestRevision": True, "percent": 100}
    if annotations.get(TAG_ROUTING) == "true":
        latest["tag"] = "latest"
    if record.canary_percent is None or record.stable is None:
        return [latest]
    targets = [{**latest, "percent": record.canary_percent}]
    if record.canary_percent < 100:
        targets.append({"revisionName": revision_name(record.name, record.stable), "latestRevision": False,
                        "percent": 100 - record.canary_percent, "tag": "prev"})
    return targets


def knative_service(deployment: Deployment, platform_url: str, domain: str) -> dict[str, Any]:
    """The Knative Service ``<isvc>-predictor`` of one InferenceService, as a cluster would show it."""
    record = deployment.record
    meta = record.manifest.get("metadata") or {}
    raw = (record.manifest.get("spec") or {}).get("predictor") or {}
    labels = {**_strings(meta.get("labels")), **_strings(raw.get("labels")),
              ISVC_LABEL: record.name, "component": "predictor"}
    template_annotations = _annotations(deployment)
    own_annotations = {k: template_annotations.pop(k) for k in MANAGED if k in template_annotations}
    state = predictor_state(deployment, domain)
    component = state.component
    status: dict[str, Any] = {
        "conditions": [condition(deployment, "ConfigurationsReady", state.latest, "LatestDeploymentReady"),
                       condition(deployment, "Ready", state.ready, "PredictorReady"),
                       condition(deployment, "RoutesReady", state.routes)],
        "latestCreatedRevisionName": component["latestCreatedRevision"],
        "url": component["url"],
        "address": {"url": f"{platform_url}/serving/{record.namespace}/{record.name}"},
        "traffic": component["traffic"],
    }
    if "latestReadyRevision" in component:
        status["latestReadyRevisionName"] = component["latestReadyRevision"]
    metadata: dict[str, Any] = {
        "name": record.name + SUFFIX, "namespace": record.namespace,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfbox:{record.uid}/predictor")),
        "resourceVersion": str(record.resource_version),  # it changes whenever its InferenceService does
        "creationTimestamp": datetime.datetime.fromtimestamp(record.created_ms / 1000, datetime.UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "labels": labels,
        "ownerReferences": [{"apiVersion": SERVING_API_VERSION, "kind": ISVC_KIND, "name": record.name,
                             "uid": record.uid, "controller": True, "blockOwnerDeletion": True}],
    }
    if own_annotations:
        metadata["annotations"] = own_annotations
    template_labels = {k: v for k, v in labels.items() if k not in TEMPLATE_LABELS_DISALLOWED}
    return {"apiVersion": KNATIVE_API_VERSION, "kind": KIND, "metadata": metadata,
            "spec": {"template": {"metadata": {"labels": template_labels, "annotations": template_annotations}},
                     "traffic": _spec_traffic(deployment, template_annotations)},
            "status": status}


def _cells(obj: dict[str, Any]) -> list[Any]:
    status = obj.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
    return [obj["metadata"]["name"], status.get("url"), status.get("latestCreatedRevisionName"),
            status.get("latestReadyRevisionName"), ready.get("status"), ready.get("reason")]


def _read_only(namespace: str, name: str | None = None) -> KubeStatus:
    """405: KServe's controller owns these objects; the InferenceService is what a user changes."""
    if name is None:
        return KubeStatus(405, "MethodNotAllowed", f"{PLURAL}.{KNATIVE_GROUP} are read-only here: kfbox shows one "
                          "for the predictor of each InferenceService. Create or delete the InferenceService "
                          f"instead: kubectl apply -f MANIFEST -n {namespace}", kind=PLURAL, group=KNATIVE_GROUP)
    owner = name.removesuffix(SUFFIX)
    return KubeStatus(405, "MethodNotAllowed", f'{PLURAL}.{KNATIVE_GROUP} "{name}" is read-only here: kfbox shows '
                      f'it for the predictor of InferenceService "{owner}". Change that instead: kubectl edit isvc '
                      f"{owner} -n {namespace}", name=name, kind=PLURAL, group=KNATIVE_GROUP)


def knative_router(res: InferenceServices) -> APIRouter:
    router = APIRouter(prefix=KNATIVE, tags=["knative services (read-only)"], include_in_schema=False)
    manager = res.manager

    def show(deployment: Deployment) -> dict[str, Any]:
        return knative_service(deployment, manager.platform.url, manager.settings.ingress_domain)

    def listing(request: Request, namespace: str | None) -> Any:
        if request.query_params.get("watch", "").lower() in ("true", "1"):
            raise KubeStatus(405, "MethodNotAllowed", f"watch is not served for {PLURAL}.{KNATIVE_GROUP} here (get "
                             "and list are); watch the InferenceServices instead: kubectl get isvc -w",
                             kind=PLURAL, group=KNATIVE_GROUP)
        matches_labels = label_selector(request.query_params.get("labelSelector"))
        matches_fields = field_selector(request.query_params.get("fieldSelector"))
        items = [show(manager.deployments[key]) for key in sorted(manager.deployments)
                 if namespace is None or key[0] == namespace]
        items = [o for o in items if matches_labels(o) and matches_fields(o)]
        latest = str(max([res.log.latest, *(int(o["metadata"]["resourceVersion"]) for o in items)]))
        if wants_table(request.headers.get("accept")):
            return table(items, latest, COLUMNS, _cells)
        return {"apiVersion": KNATIVE_API_VERSION, "kind": KIND + "List", "metadata": {"resourceVersion": latest},
                "items": items}

    @router.get("/services")
    async def list_all(request: Request) -> Any:
        return listing(request, None)

    @router.get("/namespaces/{namespace}/services")
    async def list_namespace(namespace: str, request: Request) -> Any:
        return listing(request, namespace)

    @router.get("/namespaces/{namespace}/services/{name}")
    async def get(namespace: str, name: str, request: Request) -> Any:
        deployment = manager.deployments.get((namespace, name.removesuffix(SUFFIX)))
        if deployment is None or not name.endswith(SUFFIX):
            raise KubeNotFound(404, "NotFound", f'{PLURAL}.{KNATIVE_GROUP} "{name}" not found in namespace '
                               f"{namespace}: kfbox shows one per InferenceService, named <isvc>{SUFFIX}; list "
                               f"them with: kubectl get ksvc -n {namespace}", name=name, kind=PLURAL,
                               group=KNATIVE_GROUP)
        obj = show(deployment)
        return table([obj], None, COLUMNS, _cells) if wants_table(request.headers.get("accept")) else obj

    @router.api_route("/namespaces/{namespace}/services", methods=["POST", "DELETE"])
    async def write_collection(namespace: str) -> None:
        raise _read_only(namespace)

    @router.api_route("/namespaces/{namespace}/services/{name}", methods=["PUT", "PATCH", "DELETE"])
    async def write(namespace: str, name: str) -> None:
        raise _read_only(namespace, name)

    return router
