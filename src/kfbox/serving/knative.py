"""The Knative Service KServe's controller makes for each InferenceService's predictor, read-only.

    GET /apis/serving.knative.dev/v1/services                              list, all namespaces
    GET /apis/serving.knative.dev/v1/namespaces/{ns}/services              list (labelSelector, fieldSelector)
    GET /apis/serving.knative.dev/v1/namespaces/{ns}/services/{name}       get: ``<isvc>-predictor``
    GET ...services?watch=true                                              watch (kfbox.serving.owned.Projection)
    POST, PUT, PATCH, DELETE                                                405 MethodNotAllowed

On a cluster in Serverless mode KServe writes ``<isvc>-predictor`` (``serving.knative.dev/v1``
``Service``) and Knative reports its status; clients such as KServe's own e2e tests read the
autoscaling annotations of ``spec.template`` there. kfbox runs no Knative, so it shows each served
InferenceService's predictor as that object, built by KServe's rules (its ksvc reconciler and
``SetAutoScalingAnnotations``): labels, the isvc's annotations less KServe's disallowed ones (a
user's ``autoscaling.knative.dev/target-utilization-percentage``, ``target``, ``metric``, ``initial-scale``,
``panic-window-percentage`` and ``scale-down-delay`` among them),
``autoscaling.knative.dev/class: kpa.autoscaling.knative.dev``, ``metric`` and ``target`` (over the user's) only
when the predictor sets ``scaleMetric`` / ``scaleTarget``, ``min-scale`` (default 1), ``max-scale`` unless
``maxReplicas`` is 0 or unset, ``spec.template.spec.containerConcurrency`` (the predictor's, which KServe
copies when set; Knative's defaulting webhook writes its ``container-concurrency`` default, 0, when not) and
``spec.traffic`` as KServe writes it. Its status is the
predictor's (:func:`kfbox.serving.status.predictor_state`, the rule the InferenceService's status
uses). No containers in the pod template: kfbox runs none. Writes are 405 MethodNotAllowed: the
InferenceService owns the object. An InferenceService in Standard (RawDeployment) mode has no Knative Service
but a Deployment and a HorizontalPodAutoscaler (:mod:`kfbox.serving.raw`); the routes are
:func:`kfbox.serving.owned.owned_routes`.

Example::

    kubectl get ksvc -n kubeflow-user-example-com
    kubectl get ksvc iris-predictor -o jsonpath='{.spec.template.metadata.annotations}'
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kfbox.apis import KNATIVE, KNATIVE_API_VERSION
from kfbox.serving.deployment import Deployment
from kfbox.serving.owned import (
    OwnedKind,
    component_annotations,
    component_labels,
    object_meta,
    owned_routes,
    raw_predictor,
    record_mode,
    single,
)
from kfbox.serving.printer import Column
from kfbox.serving.resources import InferenceServices
from kfbox.serving.scaling_spec import KNATIVE as KNATIVE_MODE
from kfbox.serving.status import condition, predictor_state
from kfbox.serving.store import revision_name

KIND = "Service"
PLURAL = "services"
AUTOSCALING = "autoscaling.knative.dev/"
KPA = "kpa.autoscaling.knative.dev"
MANAGED = ("serving.knative.dev/rollout-duration", "serving.knative.openshift.io/enablePassthrough")
"""Moved from the revision template to the Service's own metadata, as KServe's reconciler does."""
TEMPLATE_LABELS_DISALLOWED = frozenset({"networking.knative.dev/visibility"})
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
COLUMNS: list[Column] = [("Name", "string", "name"), ("URL", "string", ""), ("LatestCreated", "string", ""),
                         ("LatestReady", "string", ""), ("Ready", "string", ""), ("Reason", "string", "")]
"""Knative's CRD ``additionalPrinterColumns`` for ``kubectl get ksvc``."""


def _annotations(deployment: Deployment) -> dict[str, str]:
    """``spec.template.metadata.annotations``, by KServe's predictor reconciler and SetAutoScalingAnnotations."""
    record = deployment.record
    spec = record.revisions[record.latest]
    raw = raw_predictor(record)
    annotations = component_annotations(record)
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
    labels = component_labels(record)
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
    metadata = object_meta(record, KIND, labels)
    if own_annotations:
        metadata["annotations"] = own_annotations
    template_labels = {k: v for k, v in labels.items() if k not in TEMPLATE_LABELS_DISALLOWED}
    return {"apiVersion": KNATIVE_API_VERSION, "kind": KIND, "metadata": metadata,
            "spec": {"template": {"metadata": {"labels": template_labels, "annotations": template_annotations},
                                  "spec": {"containerConcurrency": record.revisions[record.latest]
                                           .container_concurrency}},
                     "traffic": _spec_traffic(deployment, template_annotations)},
            "status": status}


def _cells(obj: dict[str, Any]) -> list[Any]:
    status = obj.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c.get("type") == "Ready"), {})
    return [obj["metadata"]["name"], status.get("url"), status.get("latestCreatedRevisionName"),
            status.get("latestReadyRevisionName"), ready.get("status"), ready.get("reason")]


def _service(deployment: Deployment, platform_url: str, domain: str) -> dict[str, Any] | None:
    """The Knative Service of an InferenceService in Knative (Serverless) mode; a Standard one has none."""
    if record_mode(deployment.record) != KNATIVE_MODE:
        return None
    return knative_service(deployment, platform_url, domain)


def knative_router(res: InferenceServices) -> APIRouter:
    router = APIRouter(tags=["knative services (read-only)"], include_in_schema=False)
    manager = res.manager
    owned_routes(router, res, OwnedKind(
        KNATIVE, PLURAL, KIND, "ksvc", COLUMNS, _cells,
        single(lambda deployment: _service(deployment, manager.platform.url, manager.settings.ingress_domain))))
    return router
