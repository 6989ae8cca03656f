"""Kubernetes Events about InferenceServices: what ``kubectl get events`` and ``kubectl describe isvc`` show.

The serving control plane records the moments a user debugging a service wants to see: a revision
created, a replica started, ready, or dead, a model that failed to load (with the replica's own reason),
a scale decision, a deletion. Each is a core/v1 ``Event`` whose ``involvedObject`` is the InferenceService.

Events are **not durable**, as on a cluster (where they expire after an hour): :class:`EventRecorder` keeps
the newest :data:`CAPACITY` in memory, drops the oldest past that, and forgets them all when the server
restarts. Like Kubernetes' event correlator, the same (object, type, reason, message) again bumps the event's
``count`` and ``lastTimestamp`` instead of adding one, so a model failing on every restart is one line.

:mod:`kfbox.serving.event_routes` serves them read-only at ``/api/v1/events`` and
``/api/v1/namespaces/{ns}/events``.

Example::

    recorder = EventRecorder()
    recorder.record(Involved("default", "iris", uid), "ModelLoadFailed", "model.joblib not found", WARNING)
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import secrets
import time
from collections.abc import Callable
from typing import Any

from kfbox.apis import SERVING_API_VERSION
from kfbox.serving.kube_api import not_found
from kfbox.serving.spec import KIND
from kfbox.serving.watch import EventLog

CAPACITY = 1000
NORMAL = "Normal"
WARNING = "Warning"
COMPONENT = "kfbox-serving"

Emit = Callable[[str, str, str], None]
"""Records one event about a known object: (reason, message, type)."""


@dataclasses.dataclass(frozen=True)
class Involved:
    """The InferenceService an event is about."""

    namespace: str
    name: str
    uid: str


def _stamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """The newest :data:`CAPACITY` events, deduplicated, with a watch log (:class:`EventLog`)."""

    def __init__(self, capacity: int = CAPACITY, clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.clock = clock
        self._events: collections.OrderedDict[tuple[Involved, str, str, str], dict[str, Any]] = \
            collections.OrderedDict()
        self._version = 0
        self.log = EventLog(0)

    def record(self, involved: Involved, reason: str, message: str, type_: str = NORMAL) -> dict[str, Any]:
        """Add an event, or count the same one again; returns it. Must run on the server's loop (watchers)."""
        key = (involved, type_, reason, message)
        now = _stamp(self.clock())
        self._version += 1
        event = self._events.get(key)
        if event is not None:
            event["count"] += 1
            event["lastTimestamp"] = now
            event["metadata"]["resourceVersion"] = str(self._version)
            self._events.move_to_end(key)  # the newest last: eviction drops what was seen longest ago
            self.log.record("MODIFIED", copy.deepcopy(event), self._version)  # as it was then
            return event
        event = {"kind": "Event", "apiVersion": "v1",
                 "metadata": {"name": f"{involved.name}.{secrets.token_hex(8)}", "namespace": involved.namespace,
                              "uid": secrets.token_hex(16), "resourceVersion": str(self._version),
                              "creationTimestamp": now},
                 "involvedObject": {"apiVersion": SERVING_API_VERSION, "kind": KIND, "name": involved.name,
                                    "namespace": involved.namespace, "uid": involved.uid},
                 "reason": reason, "message": message, "type": type_, "source": {"component": COMPONENT},
                 "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                 "reportingComponent": COMPONENT, "reportingInstance": ""}
        self._events[key] = event
        while len(self._events) > self.capacity:
            self._events.popitem(last=False)
        self.log.record("ADDED", copy.deepcopy(event), self._version)
        return event

    def emitter(self, involved: Involved) -> Emit:
        """:meth:`record` bound to one object: what a replica pool is handed."""
        def emit(reason: str, message: str, type_: str) -> None:
            self.record(involved, reason, message, type_)
        return emit

    def objects(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Oldest first by last sighting, as kubectl sorts them anyway."""
        return [e for e in self._events.values() if namespace is None or e["metadata"]["namespace"] == namespace]

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        for event in self._events.values():
            if event["metadata"]["namespace"] == namespace and event["metadata"]["name"] == name:
                return event
        raise not_found(name, kind="events", group="")

    @property
    def latest(self) -> int:
        return self._version
