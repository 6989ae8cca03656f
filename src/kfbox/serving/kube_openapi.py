"""OpenAPI v3 schemas of the read-only kinds kfbox shows (Pod, Event, Deployment, ReplicaSet,
HorizontalPodAutoscaler, Knative Service), so ``kubectl explain pods.spec.containers`` or ``kubectl explain
hpa.spec.minReplicas`` works.

Each schema lists only the fields kfbox fills (kfbox.serving.pods, events, raw, replica_sets, knative), with
Kubernetes' (or Knative's) field names and a short description, written in a compact form (``Node``, ``KINDS``)
and expanded on first request: an upstream API server's documents run to thousands of lines, most of it about
fields no kfbox object carries. A field ``kubectl explain`` does not list is one kfbox never shows
(tests/serving/test_kubectl.py checks served objects against these schemas; test_kube_openapi.py checks the
names and types against the ``kubernetes`` client's models).
"""

from __future__ import annotations

import functools
from typing import Any, TypeAlias

Node: TypeAlias = "str | tuple[str, Fields] | list[Any]"
"""A field: ``"TYPE|description"`` (string, integer, boolean, map: string to string, []string), an object
``(description, fields)``, or an array of objects ``[description, fields]``."""
Fields = dict[str, Node]


def _expand(node: Node) -> dict[str, Any]:
    if isinstance(node, str):
        kind, description = node.split("|", 1)
        if kind == "map":
            return {"type": "object", "description": description, "additionalProperties": {"type": "string"}}
        if kind == "[]string":
            return {"type": "array", "description": description, "items": {"type": "string"}}
        return {"type": kind, "description": description}
    description, fields = node[0], node[1]
    schema = {"type": "object", "properties": {name: _expand(child) for name, child in fields.items()}}
    if isinstance(node, list):
        return {"type": "array", "description": description, "items": schema}
    return {**schema, "description": description}


CONDITION: Fields = {
    "type": "string|The condition's type, e.g. Ready or Available.",
    "status": "string|True, False or Unknown.",
    "reason": "string|A one-word CamelCase reason for the last transition.",
    "message": "string|A human-readable message about the last transition.",
    "lastTransitionTime": "string|When the condition last changed status (RFC 3339).",
}
META: Fields = {
    "name": "string|Unique within the namespace: <isvc>-predictor for a Deployment, HPA or Knative Service.",
    "namespace": "string|The namespace of the InferenceService the object belongs to.",
    "uid": "string|The object's unique id; kfbox keeps it across its own restarts.",
    "resourceVersion": "string|Opaque; changes whenever the object does.",
    "generation": "integer|The generation of the desired state (the InferenceService's).",
    "creationTimestamp": "string|When the object was created (RFC 3339).",
    "labels": "map|Labels, as KServe sets them (component, isvc name, app, pod-template-hash...).",
    "annotations": "map|Annotations, as KServe copies them from the InferenceService.",
    "ownerReferences": ["The object this one belongs to: the InferenceService, Deployment or ReplicaSet.", {
        "apiVersion": "string|API version of the owner.", "kind": "string|Kind of the owner.",
        "name": "string|Name of the owner.", "uid": "string|UID of the owner.",
        "controller": "boolean|True: the owner is the managing controller.",
        "blockOwnerDeletion": "boolean|True: the owner is deleted after this object (foreground deletion)."}],
}
CONTAINER: Fields = {
    "name": "string|The container's name: kserve-container.",
    "image": "string|The model server's image, as the InferenceService names it (kfbox runs a process instead).",
    "args": "[]string|Arguments given in the InferenceService.",
    "env": ["Environment variables the replicas get.", {"name": "string|Variable name.",
                                                       "value": "string|Variable value."}],
    "resources": ("Compute resources as the InferenceService asks for them (requests, limits).", {
        "requests": "map|Requested resources (cpu, memory...).", "limits": "map|Resource limits."}),
    "ports": ["The port the replica listens on.", {
        "containerPort": "integer|The replica's port on 127.0.0.1.", "name": "string|http1.",
        "protocol": "string|TCP."}],
}
POD_TEMPLATE: Node = ("The pod template of the predictor's revision.", {
    "metadata": ("Labels and annotations of the pods.", {"labels": META["labels"],
                                                          "annotations": META["annotations"]}),
    "spec": ("The pods' spec.", {
        "containers": ["The containers: kserve-container.", {k: v for k, v in CONTAINER.items() if k != "ports"}],
        "serviceAccountName": "string|The predictor's serviceAccountName, when set."}),
})
SELECTOR: Node = ("Label selector of the pods.", {"matchLabels": "map|Labels a pod must have."})
POD: Fields = {
    "spec": ("The pod's spec: one kserve-container, run by kfbox as a local process.", {
        "containers": ["The pod's containers: kserve-container, the model server.", CONTAINER],
        "nodeName": "string|The host kfbox runs on.",
        "restartPolicy": "string|Always.",
        "serviceAccountName": "string|The predictor's serviceAccountName, or default."}),
    "status": ("The replica's observed state.", {
        "phase": "string|Running while the replica's process lives, Failed once it exited.",
        "conditions": ["PodScheduled, Initialized, ContainersReady and Ready.", {
            **{k: CONDITION[k] for k in ("type", "status", "lastTransitionTime")},
            "lastProbeTime": "string|Always null."}],
        "hostIP": "string|127.0.0.1.", "podIP": "string|127.0.0.1: replicas listen on loopback.",
        "podIPs": ["The pod's IPs.", {"ip": "string|127.0.0.1."}],
        "startTime": "string|When the replica started (RFC 3339).",
        "containerStatuses": ["The state of kserve-container.", {
            "name": "string|kserve-container.",
            "ready": "boolean|True once the model server answers its readiness check.",
            "started": "boolean|True while the process lives.",
            "restartCount": "integer|Always 0: kfbox replaces a failed replica rather than restart it.",
            "state": ("running (startedAt) or terminated (exitCode, reason, startedAt).", {
                "running": ("The process is alive.", {"startedAt": "string|When it started."}),
                "terminated": ("The process exited.", {
                    "exitCode": "integer|Its exit code.", "reason": "string|Completed or Error.",
                    "startedAt": "string|When it started."})}),
            "image": "string|The image the InferenceService names.", "imageID": "string|Empty.",
            "containerID": "string|kfbox://<process id>."}]}),
}
EVENT: Fields = {
    "involvedObject": ("The InferenceService the event is about.", {
        "apiVersion": "string|serving.kserve.io/v1beta1.", "kind": "string|InferenceService.",
        "name": "string|Its name.", "namespace": "string|Its namespace.", "uid": "string|Its uid."}),
    "reason": "string|Why: a short CamelCase word, as KServe, Knative or the HPA would record it.",
    "message": "string|What happened, for a person.",
    "type": "string|Normal or Warning.",
    "source": ("Who recorded it.", {"component": "string|The component that recorded it."}),
    "firstTimestamp": "string|When it first happened (RFC 3339).",
    "lastTimestamp": "string|When it last happened: a repeat counts instead of adding an event.",
    "count": "integer|How many times it happened.",
    "reportingComponent": "string|The component that recorded it.",
    "reportingInstance": "string|Empty.",
}
DEPLOYMENT: Fields = {
    "spec": ("The desired state, as KServe writes it for a Standard-mode predictor.", {
        "replicas": "integer|Number of desired pods: the autoscaler's current decision for the latest revision.",
        "selector": SELECTOR,
        "template": POD_TEMPLATE,
        "strategy": ("How old pods are replaced by new ones.", {
            "type": "string|RollingUpdate.",
            "rollingUpdate": ("KServe's rolling update bounds.", {
                "maxUnavailable": "string|25%.", "maxSurge": "string|25%."})}),
        "revisionHistoryLimit": "integer|Old ReplicaSets kept for rollback: 10.",
        "progressDeadlineSeconds": "integer|600."}),
    "status": ("The observed state.", {
        "observedGeneration": "integer|The generation observed.",
        "replicas": "integer|Pods of every revision.",
        "updatedReplicas": "integer|Pods of the latest revision.",
        "readyReplicas": "integer|Pods whose model server is ready.",
        "availableReplicas": "integer|Pods ready (no minReadySeconds).",
        "unavailableReplicas": "integer|Pods not yet ready.",
        "conditions": ["Available and Progressing.", {
            **CONDITION, "lastUpdateTime": "string|When the condition was last updated."}]}),
}
REPLICA_SET: Fields = {
    "spec": ("The desired state of one revision's pods.", {
        "replicas": "integer|Number of desired pods of this revision.",
        "selector": SELECTOR,
        "template": POD_TEMPLATE}),
    "status": ("The observed state.", {
        "replicas": "integer|Pods of this revision.",
        "fullyLabeledReplicas": "integer|Pods with all the template's labels.",
        "readyReplicas": "integer|Pods of this revision whose model server is ready.",
        "availableReplicas": "integer|Pods ready (no minReadySeconds).",
        "observedGeneration": "integer|The generation observed."}),
}
TARGET_REF: Node = ("The scaled object: the predictor's Deployment.", {
    "apiVersion": "string|apps/v1.", "kind": "string|Deployment.", "name": "string|<isvc>-predictor."})
POLICIES: Node = ("Scaling rules for one direction.", {
    "stabilizationWindowSeconds": "integer|Past recommendations considered when scaling.",
    "selectPolicy": "string|Max: the policy allowing the largest change applies.",
    "policies": ["Allowed changes per period.", {
        "type": "string|Pods or Percent.", "value": "integer|The amount of change allowed.",
        "periodSeconds": "integer|The window the policy holds for."}]})
BOUNDS: Fields = {
    "minReplicas": "integer|Lower bound: the predictor's minReplicas, at least 1.",
    "maxReplicas": "integer|Upper bound: the predictor's maxReplicas, at least minReplicas.",
}
HPA_V2: Fields = {
    "spec": ("The autoscaler KServe writes for a Standard-mode predictor (autoscalerClass hpa).", {
        "scaleTargetRef": TARGET_REF,
        **BOUNDS,
        "metrics": ["The one Resource metric: cpu (default) or memory utilization, from scaleMetric.", {
            "type": "string|Resource.",
            "resource": ("A resource metric of the pods.", {
                "name": "string|cpu or memory.",
                "target": ("The target value.", {
                    "type": "string|Utilization.",
                    "averageUtilization": "integer|Target percent of the requested resource: the predictor's "
                                          "scaleTarget, default 80."})})}],
        "behavior": ("Scaling behaviour: the API server's defaults.", {
            "scaleUp": POLICIES, "scaleDown": POLICIES})}),
    "status": ("The observed state.", {
        "currentReplicas": "integer|Pods of every revision.",
        "desiredReplicas": "integer|Pods the autoscaler wants for the latest revision.",
        "currentMetrics": ["The measured metric, once replicas are ready.", {
            "type": "string|Resource.",
            "resource": ("The measured resource.", {
                "name": "string|cpu or memory.",
                "current": ("The current value.", {
                    "averageUtilization": "integer|Measured percent, averaged over ready pods."})})}]}),
}
HPA_V1: Fields = {
    "spec": ("The autoscaler, as autoscaling/v1 shows it.", {
        "scaleTargetRef": TARGET_REF,
        **BOUNDS,
        "targetCPUUtilizationPercentage": "integer|Target CPU utilization (absent for a memory metric, which "
                                          "the autoscaling.alpha.kubernetes.io/metrics annotation carries)."}),
    "status": ("The observed state.", {
        "currentReplicas": "integer|Pods of every revision.",
        "desiredReplicas": "integer|Pods the autoscaler wants for the latest revision.",
        "currentCPUUtilizationPercentage": "integer|Measured CPU percent, averaged over ready pods."}),
}
TRAFFIC: Fields = {
    "revisionName": "string|The revision this target routes to (the previous one, for a canary).",
    "latestRevision": "boolean|True: the target follows the latest ready revision.",
    "percent": "integer|Percent of traffic to this target.",
    "tag": "string|latest or prev, with tag routing or a canary.",
}
KNATIVE_SERVICE: Fields = {
    "spec": ("The desired state, as KServe writes it for a Serverless-mode predictor.", {
        "template": ("The revision template.", {
            "metadata": ("Labels and annotations of the revision, including Knative's autoscaling "
                         "annotations (class, metric, target, min-scale, max-scale).",
                         {"labels": META["labels"], "annotations": META["annotations"]}),
            "spec": ("The revision's spec.", {
                "containerConcurrency": "integer|Hard limit of concurrent requests per replica; 0: none."})}),
        "traffic": ["How traffic splits between revisions.", TRAFFIC]}),
    "status": ("The observed state.", {
        "conditions": ["ConfigurationsReady, Ready and RoutesReady.", CONDITION],
        "latestCreatedRevisionName": "string|The newest revision created.",
        "latestReadyRevisionName": "string|The newest revision that became ready.",
        "url": "string|The predictor's external URL, http://<isvc>-predictor.<namespace>.<domain>.",
        "address": ("The in-cluster address.", {"url": "string|Where kfbox serves the predictor."}),
        "traffic": ["The traffic split as routed.", {**TRAFFIC, "url": "string|A tagged target's URL."}]}),
}

KINDS: dict[str, list[tuple[str, str, str, Fields]]] = {
    "api/v1": [("Pod", "pods", "Pod is one model server replica: a process kfbox runs (read-only, deletable).",
                POD),
               ("Event", "events", "Event reports what happened to an InferenceService (read-only; kfbox keeps "
                                   "the newest in memory).", EVENT)],
    "apis/apps/v1": [
        ("Deployment", "deployments", "Deployment of a Standard-mode predictor, as KServe writes it "
                                      "(read-only: change the InferenceService).", DEPLOYMENT),
        ("ReplicaSet", "replicasets", "ReplicaSet of one revision of a Standard-mode predictor (read-only).",
         REPLICA_SET)],
    "apis/autoscaling/v2": [("HorizontalPodAutoscaler", "horizontalpodautoscalers", "HorizontalPodAutoscaler "
                             "of a Standard-mode predictor, as KServe writes it (read-only).", HPA_V2)],
    "apis/autoscaling/v1": [("HorizontalPodAutoscaler", "horizontalpodautoscalers", "HorizontalPodAutoscaler "
                             "of a Standard-mode predictor, as autoscaling/v1 shows it (read-only).", HPA_V1)],
    "apis/serving.knative.dev/v1": [("Service", "services", "Service is the Knative Service KServe writes for a "
                                     "Serverless-mode predictor (read-only: change the InferenceService).",
                                     KNATIVE_SERVICE)],
}
"""Per group-version path: each kind's name, plural, description and fields (spec and status)."""
PREFIX = {"": "io.k8s.api.core", "apps": "io.k8s.api.apps", "autoscaling": "io.k8s.api.autoscaling",
          "serving.knative.dev": "dev.knative.serving"}


def _split(path: str) -> tuple[str, str]:
    """``apis/apps/v1`` -> (apps, v1); ``api/v1`` -> ("", v1)."""
    parts = path.split("/")
    return ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])


def kind_schema(group: str, version: str, kind: str, description: str, fields: Fields) -> dict[str, Any]:
    api_version = f"{group}/{version}" if group else version
    return {"type": "object", "description": description,
            "properties": {"apiVersion": {"type": "string", "description": api_version},
                           "kind": {"type": "string", "description": kind},
                           "metadata": _expand(("Standard object metadata.", META)),
                           **{name: _expand(node) for name, node in fields.items()}},
            "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": kind}]}


def _read_only_paths(path: str, group: str, version: str, kind: str, plural: str, ref: str) -> dict[str, Any]:
    gvk = {"group": group, "version": version, "kind": kind}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}
    base = f"/{path}/namespaces/{{namespace}}/{plural}"
    return {base: {"get": {"responses": {"200": {"description": "OK"}}, "x-kubernetes-group-version-kind": gvk,
                           "x-kubernetes-action": "list"}},
            base + "/{name}": {"get": {"responses": ok, "x-kubernetes-group-version-kind": gvk,
                                       "x-kubernetes-action": "get"}}}


@functools.cache
def document(path: str) -> dict[str, Any]:
    """The OpenAPI v3 document of the group-version at ``/openapi/v3/<path>`` (a key of ``KINDS``)."""
    group, version = _split(path)
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for kind, plural, description, fields in KINDS[path]:
        name = f"{PREFIX[group]}.{version}.{kind}"
        schemas[name] = kind_schema(group, version, kind, description, fields)
        paths.update(_read_only_paths(path, group, version, kind, plural, f"#/components/schemas/{name}"))
    return {"openapi": "3.0.0", "info": {"title": "kfbox", "version": version}, "paths": paths,
            "components": {"schemas": schemas}}
