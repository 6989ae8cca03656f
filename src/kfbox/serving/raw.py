"""The Deployment and HorizontalPodAutoscaler KServe's controller makes for a Standard-mode predictor, read-only.

    GET /apis/apps/v1[/namespaces/{ns}]/deployments[/{name}]                       ``<isvc>-predictor``
    GET /apis/autoscaling/v2[/namespaces/{ns}]/horizontalpodautoscalers[/{name}]   the same, and autoscaling/v1
    ...?watch=true                                                                 watch (owned.Projection)
    POST, PUT, PATCH, DELETE                                                       405 MethodNotAllowed

An InferenceService annotated ``serving.kserve.io/deploymentMode: Standard`` (formerly ``RawDeployment``) gets
from KServe's raw reconcilers, instead of a Knative Service, an ``apps/v1`` Deployment ``<isvc>-predictor`` and,
unless its ``serving.kserve.io/autoscalerClass`` is ``none``, ``external`` or ``keda``, an ``autoscaling/v2``
HorizontalPodAutoscaler of the same name; clients such as KServe's e2e tests read them (the Deployment's
replicas and container env, the HPA's target). kfbox shows them as KServe builds them (``buildObjectMeta``,
``createRawDefaultDeployment``, ``getHPAMetrics``):

* both: the isvc's and the predictor's labels with ``serving.kserve.io/inferenceservice``, ``component:
  predictor`` and ``app: isvc.<isvc>-predictor`` (the selector's label), the isvc's annotations less KServe's
  disallowed ones, an owner reference to the isvc;
* the Deployment: ``spec.replicas`` is what kfbox wants now for the latest revision (on a cluster the HPA
  sets it; kfbox's autoscaler is that HPA), ``spec.template`` one container ``kserve-container`` with the
  model's ``env`` (what the replica gets: not KServe's ``INFERENCE_SERVICE_NAME``), ``args``, ``resources``
  and ``image`` *as the manifest gives them* (kfbox runs no container, so there is no runtime image to
  name); ``status`` counts kfbox's replicas (all revisions; the latest one's are ``updatedReplicas``);
* the HPA: ``minReplicas`` (at least 1), ``maxReplicas``, a Resource metric with a Utilization target: the
  predictor's ``scaleTarget`` for ``scaleMetric: cpu`` (default 80) or ``memory``; for ``concurrency`` or
  ``rps`` KServe writes no metric and the API server defaults it to 80% CPU, so this HPA says that, while
  kfbox still scales such a predictor on its KPA metric. ``status.currentMetrics`` is the utilization kfbox
  measures, when the HPA's metric is the one it scales on. ``autoscaling/v1`` is the API server's
  conversion (``targetCPUUtilizationPercentage``; another metric in annotation
  ``autoscaling.alpha.kubernetes.io/metrics``). ``spec.behavior``: KServe writes it empty, so it shows the API
  server's defaults, which kfbox's autoscaler follows.

Example::

    kubectl get deploy,hpa -n kserve-test
    kubectl get deploy iris-predictor -o jsonpath='{.spec.template.spec.containers[0].env}'
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from typing import Any

from fastapi import APIRouter

from kfbox.serving.autoscaler import HPA_SCALE_UP_PERIOD, HPA_SCALE_UP_PODS
from kfbox.serving.deployment import Deployment
from kfbox.serving.owned import (
    SUFFIX,
    OwnedKind,
    component_annotations,
    component_labels,
    model_container,
    object_meta,
    owned_routes,
    raw_predictor,
    record_mode,
    single,
)
from kfbox.serving.printer import Column, age
from kfbox.serving.resources import InferenceServices
from kfbox.serving.scaling_spec import AUTOSCALER_CLASS, MODE_ANNOTATION, STANDARD
from kfbox.serving.status import condition
from kfbox.serving.store import ServiceRecord

APPS = "/apis/apps/v1"
AUTOSCALING_V1 = "/apis/autoscaling/v1"
AUTOSCALING_V2 = "/apis/autoscaling/v2"
V1_METRICS = "autoscaling.alpha.kubernetes.io/metrics"
REVISION = "deployment.kubernetes.io/revision"
"""The Deployment's revision, and each ReplicaSet's: kfbox's revision number of the predictor."""
CONTAINER = "kserve-container"
DEFAULT_UTILIZATION = 80  # KServe's DefaultCPUUtilization, and the API server's default for an HPA without metrics
DEPLOYMENT_COLUMNS: list[Column] = [("Name", "string", "name"), ("Ready", "string", ""),
                                    ("Up-to-date", "integer", ""), ("Available", "integer", ""),
                                    ("Age", "string", "")]
HPA_COLUMNS: list[Column] = [("Name", "string", "name"), ("Reference", "string", ""), ("Targets", "string", ""),
                             ("MinPods", "string", ""), ("MaxPods", "integer", ""), ("Replicas", "integer", ""),
                             ("Age", "string", "")]
"""kubectl's columns for ``get deploy`` and ``get hpa``, as the API server prints them."""


def _behavior() -> dict[str, Any]:
    """KServe's HPA has an empty ``behavior``, which the API server fills with its defaults: scale up by 4 pods or
    100% (the larger) per 15 s with no stabilization, down by up to 100% per 15 s; the scale-down stabilization is
    left unset, so the controller-manager's flag applies (kfbox: KFBOX_SERVING_HPA_DOWNSCALE_STABILIZATION)."""
    period = int(HPA_SCALE_UP_PERIOD)
    return {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                {"type": "Pods", "value": HPA_SCALE_UP_PODS, "periodSeconds": period},
                {"type": "Percent", "value": 100, "periodSeconds": period}]},
            "scaleDown": {"selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": period}]}}


def _annotations(record: ServiceRecord, number: int | None = None) -> dict[str, str]:
    annotations = component_annotations(record, number)
    if MODE_ANNOTATION in annotations:
        annotations[MODE_ANNOTATION] = STANDARD  # KServe's defaulting webhook writes the mode's current name
    return annotations


def _meta(deployment: Deployment, kind: str) -> dict[str, Any]:
    record = deployment.record
    meta = object_meta(record, kind, {**component_labels(record), "app": f"isvc.{record.name}{SUFFIX}"})
    meta["annotations"] = _annotations(record)
    meta["generation"] = record.generation
    return meta


def pod_template(record: ServiceRecord, number: int) -> dict[str, Any]:
    """Revision ``number``'s pod template: the Deployment's while that revision is the latest, and its
    ReplicaSet's (:mod:`kfbox.serving.replica_sets`) less the ``pod-template-hash`` label."""
    pod: dict[str, Any] = {"containers": [kserve_container(record, number)]}
    account = raw_predictor(record).get("serviceAccountName")
    if account:
        pod["serviceAccountName"] = account
    labels = {**component_labels(record), "app": f"isvc.{record.name}{SUFFIX}"}
    return {"metadata": {"labels": labels, "annotations": _annotations(record, number)}, "spec": pod}


def kserve_container(record: ServiceRecord, number: int) -> dict[str, Any]:
    """The pod template's ``kserve-container`` for revision ``number``: the model's image, args and resources as
    applied, and the env that revision's replicas get (shared with the Pods, :mod:`kfbox.serving.pods`)."""
    model = model_container(record)
    container: dict[str, Any] = {"name": CONTAINER}
    for key in ("image", "args"):
        if model.get(key):
            container[key] = model[key]
    env = record.revisions[number].env
    if env:
        container["env"] = [{"name": name, "value": value} for name, value in env.items()]
    container["resources"] = model.get("resources") or {}
    return container


def replica_set(record: ServiceRecord, number: int) -> str:
    """Revision ``number``'s ReplicaSet, named as Kubernetes does: the Deployment's name and a template hash."""
    digest = hashlib.sha256(f"{record.uid}/{number}".encode()).hexdigest()[:10]
    return f"{record.name}{SUFFIX}-{digest}"


def replica_set_uid(record: ServiceRecord, number: int) -> str:
    """The uid of revision ``number``'s ReplicaSet (its Pods' owner), the same across restarts."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfbox:{record.uid}/replicaset/{number}"))


def raw_deployment(deployment: Deployment) -> dict[str, Any]:
    """The ``apps/v1`` Deployment ``<isvc>-predictor`` of a Standard-mode InferenceService."""
    record = deployment.record
    meta = _meta(deployment, "Deployment")
    meta["annotations"] = {**meta["annotations"], REVISION: str(record.latest)}
    latest = deployment.pools.get(record.latest)
    wanted = latest.desired if latest is not None else 0
    replicas = sum(len(p.replicas) for p in deployment.pools.values())
    ready = sum(p.ready_count for p in deployment.pools.values())
    updated = len(latest.replicas) if latest is not None else 0
    status: dict[str, Any] = {"observedGeneration": record.generation, "replicas": replicas,
                              "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready}
    if replicas > ready:
        status["unavailableReplicas"] = replicas - ready
    status = {k: v for k, v in status.items() if v or k == "observedGeneration"}  # zeros are omitted, as in Go
    available = ready >= wanted - math.floor(wanted * 0.25)  # maxUnavailable 25%, KServe's rolling update
    rs_name = replica_set(record, record.latest)
    done = latest is not None and latest.ready_count >= wanted and replicas == updated
    failure = latest.failure if latest is not None else None
    progress = (f'ReplicaSet "{rs_name}" has successfully progressed.' if done else
                f'ReplicaSet "{rs_name}" is progressing.' + (f" Its replicas fail: {failure}" if failure else ""))
    status["conditions"] = [
        _condition(deployment, "Available", available, "MinimumReplicasAvailable" if available else
                   "MinimumReplicasUnavailable", "Deployment has minimum availability." if available else
                   "Deployment does not have minimum availability."),
        _condition(deployment, "Progressing", True, "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
                   progress),
    ]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": wanted, "selector": {"matchLabels": {"app": meta["labels"]["app"]}},
                     "template": pod_template(record, record.latest),
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%",
                                                                             "maxSurge": "25%"}},
                     "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
            "status": status}


def _condition(deployment: Deployment, kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    shown = condition(deployment, kind, (ok, reason, message), f"Deployment/{kind}")
    shown.update(reason=reason, message=message, lastUpdateTime=shown["lastTransitionTime"])
    return shown


def _metric(deployment: Deployment) -> tuple[str, int]:
    """The HPA's one Resource metric and its utilization target, by KServe's getHPAMetrics."""
    raw = raw_predictor(deployment.record)
    metric, target = raw.get("scaleMetric"), raw.get("scaleTarget")
    if metric == "memory" and target is not None:
        return "memory", int(target)
    if metric in (None, "cpu") and target is not None:
        return "cpu", int(target)
    return "cpu", DEFAULT_UTILIZATION  # KServe's default, or the API server's for an HPA without metrics


def _current(deployment: Deployment, metric: str) -> int | None:
    """The average utilization kfbox measures, when it scales the latest revision on ``metric``."""
    latest = deployment.pools.get(deployment.record.latest)
    if latest is None or latest.spec.scale_metric != metric or not latest.ready_count:
        return None
    figure = latest.autoscaler.figure(time.monotonic())
    return None if figure is None else round(figure / latest.ready_count)


def hpa(deployment: Deployment) -> dict[str, Any] | None:
    """The ``autoscaling/v2`` HorizontalPodAutoscaler of a Standard-mode InferenceService, if KServe writes one."""
    if record_mode(deployment.record) != STANDARD:
        return None
    meta = _meta(deployment, "HorizontalPodAutoscaler")
    if meta["annotations"].get(AUTOSCALER_CLASS, "hpa") != "hpa":
        return None
    record = deployment.record
    spec = record.revisions[record.latest]
    minimum = max(spec.min_replicas, 1)
    metric, target = _metric(deployment)
    latest = deployment.pools.get(record.latest)
    status: dict[str, Any] = {"currentReplicas": sum(len(p.replicas) for p in deployment.pools.values()),
                              "desiredReplicas": latest.desired if latest is not None else 0}
    current = _current(deployment, metric)
    if current is not None:
        status["currentMetrics"] = [{"type": "Resource", "resource": {
            "name": metric, "current": {"averageUtilization": current}}}]
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"]},
                     "minReplicas": minimum, "maxReplicas": max(spec.max_replicas, minimum),
                     "metrics": [{"type": "Resource", "resource": {"name": metric, "target": {
                         "type": "Utilization", "averageUtilization": target}}}],
                     "behavior": _behavior()},
            "status": status}


def hpa_v1(deployment: Deployment) -> dict[str, Any] | None:
    """The same HPA as ``autoscaling/v1`` shows it (the API server's conversion)."""
    v2 = hpa(deployment)
    if v2 is None:
        return None
    spec, status = v2["spec"], v2["status"]
    resource = spec["metrics"][0]["resource"]
    meta = dict(v2["metadata"])
    v1_spec = {k: spec[k] for k in ("scaleTargetRef", "minReplicas", "maxReplicas")}
    v1_status = {k: status[k] for k in ("currentReplicas", "desiredReplicas")}
    if resource["name"] == "cpu":
        v1_spec["targetCPUUtilizationPercentage"] = resource["target"]["averageUtilization"]
        if "currentMetrics" in status:
            v1_status["currentCPUUtilizationPercentage"] = status["currentMetrics"][0]["resource"]["current"][
                "averageUtilization"]
    else:
        meta["annotations"] = {**meta["annotations"], V1_METRICS: json.dumps(spec["metrics"])}
    return {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": meta,
            "spec": v1_spec, "status": v1_status}


def _standard(deployment: Deployment) -> dict[str, Any] | None:
    return raw_deployment(deployment) if record_mode(deployment.record) == STANDARD else None


def _deployment_cells(obj: dict[str, Any]) -> list[Any]:
    status = obj["status"]
    return [obj["metadata"]["name"], f"{status.get('readyReplicas', 0)}/{obj['spec']['replicas']}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
            age(obj["metadata"]["creationTimestamp"])]


def _hpa_cells(obj: dict[str, Any]) -> list[Any]:
    spec, status = obj["spec"], obj["status"]
    ref = spec["scaleTargetRef"]
    if "metrics" in spec:  # v2
        resource = spec["metrics"][0]["resource"]
        current = (status.get("currentMetrics") or [{}])[0].get("resource", {}).get("current", {})
        name, target, now = resource["name"], resource["target"]["averageUtilization"], \
            current.get("averageUtilization")
    else:
        name, target, now = "cpu", spec.get("targetCPUUtilizationPercentage"), \
            status.get("currentCPUUtilizationPercentage")
    shown = "<unknown>" if now is None else f"{now}%"
    return [obj["metadata"]["name"], f"{ref['kind']}/{ref['name']}", f"{name}: {shown}/{target}%",
            str(spec["minReplicas"]), spec["maxReplicas"], status["currentReplicas"],
            age(obj["metadata"]["creationTimestamp"])]


def raw_router(res: InferenceServices) -> APIRouter:
    router = APIRouter(tags=["kserve standard-mode objects (read-only)"], include_in_schema=False)
    owned_routes(router, res, OwnedKind(APPS, "deployments", "Deployment", "deploy", DEPLOYMENT_COLUMNS,
                                        _deployment_cells, single(_standard)))
    for api, build in ((AUTOSCALING_V2, hpa), (AUTOSCALING_V1, hpa_v1)):
        owned_routes(router, res, OwnedKind(api, "horizontalpodautoscalers", "HorizontalPodAutoscaler", "hpa",
                                            HPA_COLUMNS, _hpa_cells, single(build)))
    return router
