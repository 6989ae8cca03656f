"""The serving manager: keeps every InferenceService's replicas in line with the database.

One asyncio task ticks every :data:`TICK_SECONDS` (:data:`STARTING_TICK_SECONDS` while a replica
starts, or sooner when woken by a request waiting for a cold start): it probes, replaces and
scales replicas, promotes a new revision once it is ready, and updates the replica gauges.
API calls change the database first, then the in-memory deployments, so a server restart
rebuilds the same state from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from kfbox.errors import InvalidInput, NotFound
from kfbox.server.platform import Platform
from kfbox.server.processes import kill_group
from kfbox.serving.deployment import Deployment
from kfbox.serving.events import EventRecorder, Involved
from kfbox.serving.launcher import ReplicaLauncher
from kfbox.serving.metrics import ServingMetrics
from kfbox.serving.pool import PoolConfig, Replica, ReplicaPool
from kfbox.serving.spec import InferenceServiceSpec
from kfbox.serving.store import ServiceRecord, ServingStore, revision_name
from kfbox.storage import UriResolver

log = logging.getLogger(__name__)
TICK_SECONDS = 0.2
STARTING_TICK_SECONDS = 0.05
SHUTDOWN_GRACE_SECONDS = 3.0


class ServingManager:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.settings = platform.settings
        self.store = ServingStore(platform.db)
        self.metrics = ServingMetrics(platform.metrics)
        self.resolver = UriResolver(platform.settings, self._registry_lookup)
        self.deployments: dict[tuple[str, str], Deployment] = {}
        self.events = EventRecorder()
        """What ``kubectl get events`` and ``kubectl describe isvc`` show (in memory only)."""
        self.launcher = ReplicaLauncher(platform.settings.serving_dir / "forkserver",
                                        warm=platform.settings.serving_warm_standby)
        self.release: Callable[[int], Awaitable[None]] | None = None
        """An external data plane's hook, awaited before a replica stops (:attr:`PoolConfig.release`)."""
        self.forget: Callable[[int], None] | None = None
        """An external data plane's hook, called once a replica died (:attr:`PoolConfig.forget`)."""
        self.handoff_refusal: Callable[[Deployment], str | None] | None = None
        """With the connection hand-off: why kfbox keeps a service's connections (None: they go to its replicas);
        shown in its status (:func:`kfbox.serving.status.describe`)."""
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Startup hook (runs on the server's loop): bring back every stored InferenceService."""
        self._wake = asyncio.Event()
        for record in self.store.list():
            self._install(record, restored=True)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def shutdown(self) -> None:
        """Shutdown hook: SIGTERM every replica at once, SIGKILL what is left after a grace period; then the
        fork server, which reaps them."""
        if self._task is not None:
            self._task.cancel()
        children = [child for deployment in self.deployments.values() for pool in deployment.pools.values()
                    for child in pool.children()]
        for child in children:
            kill_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while any(child.alive for child in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in children:
            child.stop(0)
        self.launcher.close()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            for deployment in list(self.deployments.values()):
                try:
                    await self._reconcile(deployment)
                except Exception:  # one broken deployment must not stop the others
                    log.exception("reconciling %s failed", deployment.key)
            with contextlib.suppress(TimeoutError):  # a starting replica is probed more often: it is waited for
                await asyncio.wait_for(self._wake.wait(), STARTING_TICK_SECONDS if self._starting() else TICK_SECONDS)
            self._wake.clear()

    async def _reconcile(self, deployment: Deployment) -> None:
        now = time.monotonic()
        for pool in list(deployment.pools.values()):
            await pool.tick(now)
        record = deployment.record
        latest = deployment.pools.get(record.latest)
        if record.latest != record.stable and latest is not None and latest.ready_count and latest.initialized and (
                record.canary_percent is None or record.stable is None):
            promoted = await asyncio.to_thread(self.store.promote, record.namespace, record.name, record.latest)
            if self.deployments.get(record.key) is deployment:
                await self._update(deployment, promoted)
        ready = sum(p.ready_count for p in deployment.pools.values())
        desired = sum(p.desired for p in deployment.pools.values())
        self.metrics.replicas.labels(*deployment.key).set(ready)
        self.metrics.desired.labels(*deployment.key).set(desired)

    def _starting(self) -> bool:
        """Some replica is starting: the loop ticks faster, since a request may be waiting for it."""
        return any(replica.ready_at is None for replica in self._replicas())

    def _replicas(self) -> list[Replica]:
        return [replica for deployment in self.deployments.values() for pool in deployment.pools.values()
                for replica in pool.replicas]

    # --- operations ----------------------------------------------------------------------
    async def apply(self, manifest: Any, namespace: str) -> ServiceRecord:
        spec = InferenceServiceSpec.parse(manifest, default_namespace=namespace)
        if spec.namespace != namespace:
            raise InvalidInput(f"metadata.namespace {spec.namespace!r} differs from the namespace in the URL "
                               f"{namespace!r}.")
        if spec.predictor.storage_uri:
            self.resolver.check_scheme(spec.predictor.storage_uri)
        record, _ = await asyncio.to_thread(self.store.apply, spec)
        await self.adopt(record)
        return record

    async def adopt(self, record: ServiceRecord) -> None:
        """Run what ``record`` (just written to the store) asks for; an older write never wins."""
        deployment = self.deployments.get(record.key)
        if deployment is None:
            self._install(record)
        elif record.resource_version >= deployment.record.resource_version:
            await self._update(deployment, record)
        self.wake()

    async def delete(self, namespace: str, name: str, resource_version: str | None = None) -> int:
        """Remove it and stop its replicas; returns the deletion's resourceVersion."""
        version = await asyncio.to_thread(self.store.delete, namespace, name, resource_version)
        deployment = self.deployments.pop((namespace, name), None)
        if deployment is not None:
            self.events.record(self._involved(deployment.record), "Deleted", "InferenceService deleted; "
                               "stopping its replicas")
            await asyncio.gather(*(pool.close() for pool in deployment.pools.values()))
        self.metrics.forget(namespace, name)
        return version

    async def promote(self, namespace: str, name: str) -> ServiceRecord:
        record = await asyncio.to_thread(self.store.promote, namespace, name)
        await self._update(self.deployment(namespace, name), record)
        return record

    async def rollback(self, namespace: str, name: str) -> ServiceRecord:
        record = await asyncio.to_thread(self.store.rollback, namespace, name)
        await self._update(self.deployment(namespace, name), record)
        return record

    def deployment(self, namespace: str, name: str) -> Deployment:
        deployment = self.deployments.get((namespace, name))
        if deployment is None:
            raise NotFound(f"InferenceService {namespace}/{name} does not exist. List them with: kfbox serve list")
        return deployment

    def log_paths(self, namespace: str, name: str, revision: int | None = None) -> list[Path]:
        deployment = self.deployment(namespace, name)
        folder = self._log_dir(namespace, name)
        number = revision or deployment.record.latest
        prefix = revision_name(name, number) + "-"
        paths = [p for p in folder.glob(f"{prefix}*.log")] if folder.exists() else []
        return sorted(paths, key=lambda p: p.stat().st_mtime)

    # --- internals -----------------------------------------------------------------------
    def _install(self, record: ServiceRecord, restored: bool = False) -> None:
        deployment = Deployment(record=record)
        self.deployments[record.key] = deployment
        self._sync_pools(deployment, restored)

    async def _update(self, deployment: Deployment, record: ServiceRecord) -> None:
        deployment.record = record
        for pool in self._sync_pools(deployment):
            await pool.close()

    def _sync_pools(self, deployment: Deployment, restored: bool = False) -> list[ReplicaPool]:
        """Create pools for revisions that should run (``restored``: from the store at start, not new), hand a
        running one its revision's new HPA fields (:func:`kfbox.serving.store.hpa_only`); return the ones to
        close."""
        record = deployment.record
        wanted = deployment.wanted_revisions()
        for number, pool in deployment.pools.items():
            if number in record.revisions and pool.spec != record.revisions[number]:
                pool.rescale(record.revisions[number])  # Standard mode's HPA fields, changed in place
        for number in wanted - deployment.pools.keys():
            served = record.revisions[number].served_name(record.name)  # --model_name, else the service's
            config = PoolConfig(model_name=served, revision=revision_name(record.name, number),
                                log_dir=self._log_dir(record.namespace, record.name),
                                scale_window=self.settings.serving_scale_window,
                                start_timeout=self.settings.serving_replica_start_timeout,
                                on_replica_ready=self.metrics.replica_start_seconds.labels(*record.key).observe,
                                allow_unsafe_pickle=self.settings.allow_unsafe_pickle,
                                queue_per_replica=self.settings.serving_queue_per_replica,
                                drain_seconds=self.settings.serving_drain_seconds,
                                hpa_downscale_stabilization=self.settings.serving_hpa_downscale_stabilization,
                                release=self.release, forget=self.forget,
                                emit=self.events.emitter(self._involved(record)),
                                title=f"kfbox replica {record.namespace}/{record.name} rev {number}")
            deployment.pools[number] = ReplicaPool(config, record.revisions[number], self.resolver.localize,
                                                   self.launcher)
            if not restored and number == record.latest:
                self.events.record(self._involved(record), "RevisionCreated", f"Created revision {config.revision}")
        return [deployment.pools.pop(n) for n in list(deployment.pools) if n not in wanted]

    @staticmethod
    def _involved(record: ServiceRecord) -> Involved:
        return Involved(record.namespace, record.name, record.uid)

    def _log_dir(self, namespace: str, name: str) -> Path:
        return self.settings.logs_dir / "serving" / namespace / name

    def _registry_lookup(self, model: str, version: str | None) -> str:
        registry = self.platform.services.registry
        if registry is None:
            raise NotFound("The Model Registry is not part of this server, so model-registry:// cannot be resolved.")
        return str(registry.resolve_artifact_uri(model, version))
