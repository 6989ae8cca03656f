"""The ReplicaSets of KServe's Standard-mode Deployments, read-only: what ``kubectl describe deploy`` and
``kubectl rollout history`` read.

    GET /apis/apps/v1[/namespaces/{ns}]/replicasets[/{name}]   list (label and field selectors), get, watch
    POST, PUT, PATCH, DELETE                                   405 MethodNotAllowed

On a cluster the Deployment ``<isvc>-predictor`` (:mod:`kfbox.serving.raw`) makes one ReplicaSet per pod
template it rolled out, and keeps the old ones scaled to 0 (up to its ``revisionHistoryLimit``, 10) so a
rollout can be undone. kfbox shows one per revision of the predictor that it still stores: every revision with
replicas (the latest, and the stable one while a canary runs) and up to 10 retired ones, at 0. Each is named as
its Pods' owner (:func:`kfbox.serving.raw.replica_set`), carries the Deployment's pod template for that
revision with ``pod-template-hash`` added to its labels and selector, annotation
``deployment.kubernetes.io/revision`` (the revision's number, as the Deployment's own for the latest), a
controller owner reference to the Deployment, and in ``status`` the revision's replicas.

Knative mode has none here: Knative's revisions would own Deployments and ReplicaSets of their own.

Example::

    kubectl get rs -n kserve-test
    kubectl rollout history deploy/iris-predictor -n kserve-test
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter

from kfbox.serving.deployment import Deployment
from kfbox.serving.owned import SUFFIX, OwnedKind, object_meta, object_uid, owned_routes, record_mode
from kfbox.serving.printer import Column, age
from kfbox.serving.raw import APPS, REVISION, pod_template, replica_set, replica_set_uid
from kfbox.serving.resources import InferenceServices
from kfbox.serving.scaling_spec import STANDARD

HISTORY = 10
"""The Deployment's ``revisionHistoryLimit``: the retired ReplicaSets kept."""
COLUMNS: list[Column] = [("Name", "string", "name"), ("Desired", "integer", ""), ("Current", "integer", ""),
                         ("Ready", "integer", ""), ("Age", "string", "")]
"""The API server's columns for ``kubectl get rs`` (less -o wide's)."""


def _shown(deployment: Deployment) -> list[int]:
    """The revisions with a ReplicaSet: those with replicas or the latest, and the newest retired ones."""
    record = deployment.record
    live = {n for n in record.revisions if n in deployment.pools or n == record.latest}
    retired = sorted(n for n in record.revisions if n not in live)[-HISTORY:]
    return sorted(live | set(retired))


def replica_set_object(deployment: Deployment, number: int) -> dict[str, Any]:
    """Revision ``number``'s ``apps/v1`` ReplicaSet."""
    record = deployment.record
    name = replica_set(record, number)
    template = pod_template(record, number)
    labels = {**template["metadata"]["labels"], "pod-template-hash": name.rsplit("-", 1)[1]}
    template["metadata"]["labels"] = labels
    pool = deployment.pools.get(number)
    wanted = pool.desired if pool is not None else 0
    meta = object_meta(record, "ReplicaSet", labels)
    meta.update(name=name, uid=replica_set_uid(record, number), generation=record.generation,
                annotations={**template["metadata"]["annotations"], REVISION: str(number),
                             "deployment.kubernetes.io/desired-replicas": str(wanted),
                             "deployment.kubernetes.io/max-replicas": str(wanted + math.ceil(wanted * 0.25))},
                ownerReferences=[{"apiVersion": "apps/v1", "kind": "Deployment", "name": record.name + SUFFIX,
                                  "uid": object_uid(record, "Deployment"), "controller": True,
                                  "blockOwnerDeletion": True}])
    replicas = len(pool.replicas) if pool is not None else 0
    ready = pool.ready_count if pool is not None else 0
    status = {"replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": ready,
              "availableReplicas": ready, "observedGeneration": record.generation}
    status = {k: v for k, v in status.items() if v or k == "replicas"}  # Go omits the zeros but this one
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
            "spec": {"replicas": wanted, "selector": {"matchLabels": {
                "app": labels["app"], "pod-template-hash": labels["pod-template-hash"]}}, "template": template},
            "status": status}


def replica_sets(deployment: Deployment) -> list[dict[str, Any]]:
    """The ReplicaSets of a Standard-mode InferenceService's Deployment, oldest revision first; none otherwise."""
    if record_mode(deployment.record) != STANDARD:
        return []
    return [replica_set_object(deployment, number) for number in _shown(deployment)]


def cells(obj: dict[str, Any]) -> list[Any]:
    status = obj["status"]
    return [obj["metadata"]["name"], obj["spec"]["replicas"], status["replicas"], status.get("readyReplicas", 0),
            age(obj["metadata"]["creationTimestamp"])]


def replica_set_router(res: InferenceServices) -> APIRouter:
    router = APIRouter(tags=["kserve standard-mode objects (read-only)"], include_in_schema=False)
    owned_routes(router, res, OwnedKind(APPS, "replicasets", "ReplicaSet", "rs", COLUMNS, cells, replica_sets))
    return router
