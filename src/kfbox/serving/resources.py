"""InferenceServices as Kubernetes objects: rendering, the event log, and status-change tracking.

The router writes through the store (which hands out resourceVersions), asks the manager to
run the result (:meth:`ServingManager.adopt`), then :meth:`InferenceServices.emit` records the
event watchers see. The tracker task gives status changes their own resourceVersion and event. Each of
:attr:`InferenceServices.followers` hears every event after it is recorded: the objects KServe would write
for a predictor derive their own watch events from it (:class:`kfbox.serving.owned.Projection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

from kfbox.serving.deployment import Deployment
from kfbox.serving.kube_api import not_found
from kfbox.serving.manager import ServingManager
from kfbox.serving.status import describe
from kfbox.serving.store import ServiceRecord
from kfbox.serving.watch import TRACK_SECONDS, EventLog

logger = logging.getLogger(__name__)


def _fingerprint(obj: dict[str, Any]) -> str:
    return json.dumps(obj.get("status"), sort_keys=True)


class InferenceServices:
    def __init__(self, manager: ServingManager) -> None:
        self.manager = manager
        self.store = manager.store
        self.log = EventLog(0)
        self._seen: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task[None] | None = None
        self.followers: list[Callable[[str, tuple[str, str], int], None]] = []
        """Called with each event's type, (namespace, name) and resourceVersion, once it is recorded."""
        self.lock = asyncio.Lock()
        """Held around each write and its adopt, and around a status touch: versions reach memory in order."""

    # --- lifecycle (after the manager's start) ---------------------------------------------
    def start(self) -> None:
        self.log = EventLog(self.store.current_version())  # older versions: 410, the client relists
        for key, deployment in self.manager.deployments.items():
            self._seen[key] = _fingerprint(self.show(deployment))
        self._task = asyncio.get_running_loop().create_task(self._track())

    def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # --- reading -----------------------------------------------------------------------------
    def show(self, deployment: Deployment) -> dict[str, Any]:
        return describe(deployment, self.manager.platform.url, self.manager.settings.ingress_domain,
                        self.manager.handoff_refusal)

    def deployment(self, namespace: str, name: str) -> Deployment:
        deployment = self.manager.deployments.get((namespace, name))
        if deployment is None:
            raise not_found(name, namespace=namespace)
        return deployment

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self.show(self.deployment(namespace, name))

    def objects(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [self.show(self.manager.deployments[key]) for key in sorted(self.manager.deployments)
                if namespace is None or key[0] == namespace]

    # --- writing -----------------------------------------------------------------------------
    async def commit(self, record: ServiceRecord, created: bool) -> dict[str, Any]:
        """Run a stored write and tell watchers; returns the object as it is now."""
        await self.manager.adopt(record)
        obj = self.get(record.namespace, record.name)
        self.emit("ADDED" if created else "MODIFIED", obj)
        return obj

    def emit(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            self._seen.pop(key, None)
        else:
            self._seen[key] = _fingerprint(obj)
        self.log.record(kind, obj, int(meta["resourceVersion"]))
        for follower in self.followers:
            try:
                follower(kind, key, int(meta["resourceVersion"]))
            except Exception:  # a derived view's failure must not fail the write that is already stored
                logger.exception("a watch view of %s/%s failed on its %s event", *key, kind)

    async def _track(self) -> None:
        while True:
            await asyncio.sleep(TRACK_SECONDS)
            for key, deployment in list(self.manager.deployments.items()):
                with contextlib.suppress(Exception):  # one bad object must not stop tracking the others
                    await self._check(key, deployment)
            for key in set(self._seen) - set(self.manager.deployments):
                self._seen.pop(key, None)

    async def _check(self, key: tuple[str, str], deployment: Deployment) -> None:
        if self._seen.get(key) == _fingerprint(self.show(deployment)):
            return
        async with self.lock:
            fresh = await asyncio.to_thread(self.store.touch, *key)
            if fresh is None or self.manager.deployments.get(key) is not deployment:
                return
            if fresh.resource_version > deployment.record.resource_version:  # a touch changes nothing else
                deployment.record = dataclasses.replace(deployment.record, resource_version=fresh.resource_version)
            self.emit("MODIFIED", self.show(deployment))
