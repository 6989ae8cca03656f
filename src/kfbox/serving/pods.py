"""Each model replica as the core/v1 Pod a cluster would run for it: what ``kubectl get pods`` shows.

On a cluster an InferenceService's replicas are pods its predictor's ReplicaSet made; kfbox runs each replica as
a local process (:class:`kfbox.serving.pool.Replica`), so it shows one Pod per replica of every revision still
running, named and labelled as KServe and Knative name theirs (names stay the same for the replica's life):

* Knative mode: ``<isvc>-predictor-<revision 00001>-deployment-<template hash>-<suffix>``, with the Knative
  Service's template labels, Knative's ``serving.knative.dev/{service,configuration,revision}`` (and their
  uids), ``app: <revision>`` and ``pod-template-hash``;
* Standard mode: ``<isvc>-predictor-<template hash>-<suffix>``, with the Deployment's template labels
  (``app: isvc.<isvc>-predictor``) and ``pod-template-hash``; the hash is the ReplicaSet's of
  :mod:`kfbox.serving.raw`.

Each is owned by its ReplicaSet and has one container, ``kserve-container``, with the revision's env, args and
resources as the Deployment view shows them; ``status`` says what the replica's process does: ``Running``
while it lives (``Ready`` once its model answers the readiness probe), ``Failed`` once it exited (until the
pool reaps it). ``podIP`` and ``hostIP`` are 127.0.0.1, the node is this machine. A Pod leads to its replica
(:class:`PodReplica`) for the log and delete routes of :mod:`kfbox.serving.pod_routes`; :class:`PodWatch` turns
their changes into watch events.

Example::

    PodWatch(manager).objects("default")  # [{"kind": "Pod", "metadata": {"name": "iris-predictor-00001-deploy..."}}]
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import hashlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, TypeVar

from kfbox.serving.deployment import Deployment
from kfbox.serving.manager import ServingManager
from kfbox.serving.owned import (
    SUFFIX,
    component_annotations,
    component_labels,
    object_meta,
    raw_predictor,
    record_mode,
)
from kfbox.serving.pool import Replica, ReplicaPool
from kfbox.serving.printer import Column, age
from kfbox.serving.raw import CONTAINER, kserve_container, replica_set, replica_set_uid
from kfbox.serving.scaling_spec import STANDARD
from kfbox.serving.store import ServiceRecord, revision_name
from kfbox.serving.watch import TRACK_SECONDS, EventLog

logger = logging.getLogger(__name__)

KNATIVE_LABEL = "serving.knative.dev/"
SAFE = "bcdfghjklmnpqrstvwxz2456789"
"""The letters Kubernetes draws generated name suffixes and template hashes from (no vowels, no look-alikes)."""
COLUMNS: list[Column] = [("Name", "string", "name"), ("Ready", "string", ""), ("Status", "string", ""),
                         ("Restarts", "string", ""), ("Age", "string", "")]
"""The API server's columns for ``kubectl get pods``."""
FIELDS = ("metadata.name", "metadata.namespace", "status.phase", "spec.nodeName")


@dataclasses.dataclass(frozen=True)
class PodReplica:
    """A Pod and the replica it shows."""

    pod: dict[str, Any]
    pool: ReplicaPool
    replica: Replica


def _stamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(SAFE[b % len(SAFE)] for b in digest[:length])


def _uid(record: ServiceRecord, what: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kfbox:{record.uid}/{what}"))


def _owner(record: ServiceRecord, number: int) -> tuple[str, dict[str, str]]:
    """The ReplicaSet that owns revision ``number``'s pods, and the labels its pod template adds."""
    if record_mode(record) == STANDARD:
        name = replica_set(record, number)
        template = name.rsplit("-", 1)[1]
        return name, {"app": f"isvc.{record.name}{SUFFIX}", "pod-template-hash": template}
    revision = revision_name(record.name, number)
    template = _safe(f"{record.uid}/{number}", 10)
    service = record.name + SUFFIX
    return f"{revision}-deployment-{template}", {
        "app": revision, "pod-template-hash": template,
        KNATIVE_LABEL + "service": service, KNATIVE_LABEL + "serviceUID": _uid(record, "predictor"),
        KNATIVE_LABEL + "configuration": service, KNATIVE_LABEL + "configurationGeneration": str(number),
        KNATIVE_LABEL + "configurationUID": _uid(record, "predictor/Configuration"),
        KNATIVE_LABEL + "revision": revision, KNATIVE_LABEL + "revisionUID": _uid(record, f"revision/{number}")}


def pod(record: ServiceRecord, number: int, replica: Replica) -> dict[str, Any]:
    """The Pod of one replica of revision ``number``."""
    owner, extra = _owner(record, number)
    name = f"{owner}-{_safe(f'{record.uid}/{number}/{replica.index}/{replica.child.pid}', 5)}"
    meta = object_meta(record, "Pod", {**component_labels(record), **extra})
    started = _stamp(replica.created)
    del meta["resourceVersion"]  # the Pod's own (PodWatch): not the isvc's
    meta.update(name=name, uid=_uid(record, f"pod/{number}/{replica.index}/{replica.child.pid}"),
                creationTimestamp=started, annotations=component_annotations(record),
                ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                  "uid": replica_set_uid(record, number), "controller": True,
                                  "blockOwnerDeletion": True}])
    container = kserve_container(record, number)
    container["ports"] = [{"containerPort": replica.port, "name": "http1", "protocol": "TCP"}]
    spec: dict[str, Any] = {"containers": [container], "nodeName": socket.gethostname(), "restartPolicy": "Always",
                            "serviceAccountName": raw_predictor(record).get("serviceAccountName") or "default"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": _status(replica, container.get("image") or "")}


def _status(replica: Replica, image: str) -> dict[str, Any]:
    started = _stamp(replica.created)
    alive = replica.child.alive
    ready = alive and replica.ready
    ready_since = _stamp(replica.created + (replica.ready_at - replica.started_at)) \
        if replica.ready_at is not None else started

    def condition(kind: str, ok: bool, since: str) -> dict[str, Any]:
        return {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
                "lastTransitionTime": since}

    state: dict[str, Any]
    if alive:
        state = {"running": {"startedAt": started}}
    else:
        code = replica.child.returncode
        state = {"terminated": {"exitCode": code if code is not None else -1,
                                "reason": "Completed" if code == 0 else "Error", "startedAt": started}}
    return {"phase": "Running" if alive else "Failed",
            "conditions": [condition("PodScheduled", True, started), condition("Initialized", True, started),
                           condition("ContainersReady", ready, ready_since), condition("Ready", ready, ready_since)],
            "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "startTime": started,
            "containerStatuses": [{"name": CONTAINER, "ready": ready, "started": alive, "restartCount": 0,
                                   "state": state, "image": image, "imageID": "",
                                   "containerID": f"kfbox://{replica.child.pid}"}]}


def pod_replicas(manager: ServingManager, namespace: str | None = None) -> list[PodReplica]:
    """Every replica's Pod (in ``namespace``; None: every namespace), by service, revision and start."""
    found = []
    for key in sorted(manager.deployments):
        if namespace is not None and key[0] != namespace:
            continue
        deployment: Deployment = manager.deployments[key]
        for number in sorted(deployment.pools):
            pool = deployment.pools[number]
            for replica in pool.replicas:
                found.append(PodReplica(pod(deployment.record, number, replica), pool, replica))
    return found


def cells(obj: dict[str, Any]) -> list[Any]:
    status = obj["status"]
    (container,) = status["containerStatuses"]
    shown = status["phase"] if status["phase"] != "Failed" else "Error"
    return [obj["metadata"]["name"], f"{int(container['ready'])}/1", shown, str(container["restartCount"]),
            age(status.get("startTime"))]


T = TypeVar("T")


class PodWatch:
    """The Pods' watch events, found by comparing them with what was last seen: a replica's life (spawn, ready,
    death, deletion) records no event of its own, so :meth:`refresh` runs at each list, get and delete, and every
    :data:`~kfbox.serving.watch.TRACK_SECONDS` while a watch is open. Each Pod's ``resourceVersion`` is the version
    (this log's own count) at which it last changed."""

    def __init__(self, manager: ServingManager) -> None:
        self.manager = manager
        self.log = EventLog(0)
        self.version = 0
        self.last: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.watchers = 0
        """Watches open now: the pods are looked at while there are any."""

    def refresh(self) -> list[PodReplica]:
        """Every Pod as it is now (with its resourceVersion), after recording what changed since the last look."""
        found = pod_replicas(self.manager)
        current: dict[tuple[str, str], PodReplica] = {}
        for item in found:
            meta = item.pod["metadata"]
            key = (meta["namespace"], meta["name"])
            current[key] = item
            shown = json.dumps(item.pod, sort_keys=True)
            previous = self.last.get(key)
            if previous is not None and previous[0] == shown:
                meta["resourceVersion"] = previous[1]["metadata"]["resourceVersion"]
                continue
            self.version += 1
            meta["resourceVersion"] = str(self.version)
            self.last[key] = (shown, item.pod)
            self.log.record("MODIFIED" if previous is not None else "ADDED", copy.deepcopy(item.pod), self.version)
        for key in set(self.last) - set(current):
            self.version += 1
            gone = self.last.pop(key)[1]
            self.log.record("DELETED", {**gone, "metadata": {**gone["metadata"],
                                                             "resourceVersion": str(self.version)}}, self.version)
        return found

    def objects(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [item.pod for item in self.refresh()
                if namespace is None or item.pod["metadata"]["namespace"] == namespace]

    async def watched(self, events: AsyncIterable[T]) -> AsyncIterator[T]:
        """A watch's stream, with the pods looked at every TRACK_SECONDS while at least one watch is open (an
        idle server without watches does not look)."""
        self.watchers += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._track())
        try:
            async for line in events:
                yield line
        finally:
            self.watchers -= 1

    async def _track(self) -> None:
        try:
            while self.watchers:
                await asyncio.sleep(TRACK_SECONDS)
                try:
                    self.refresh()
                except Exception:  # a replica changing under the look: the next one sees it settled
                    logger.exception("looking at the pods failed")
        finally:
            self._task = None
