"""The replicas' CPU and memory as metrics-server's ``metrics.k8s.io/v1beta1`` PodMetrics: ``kubectl top pods``.

    GET /apis/metrics.k8s.io/v1beta1/pods, .../namespaces/{ns}/pods[/{name}]   labelSelector, fieldSelector

Each Pod of :mod:`kfbox.serving.pods` gets the usage of its replica's process, read from ``/proc``
(:func:`kfbox.server.processes.read_proc`): memory is its resident set now; CPU is a rate, so it is measured
between two readings, the one an earlier request left for the pod when it is at least :data:`MIN_WINDOW` old
(metrics-server's scrape window), else one taken :data:`MIN_WINDOW` before this answer.

Example::

    kubectl top pods -n kserve-test -l serving.kserve.io/inferenceservice=iris
"""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from fastapi import APIRouter, Request

from kfbox.server.processes import read_proc
from kfbox.serving.kube_api import KubeNotFound
from kfbox.serving.pods import FIELDS, PodReplica, PodWatch
from kfbox.serving.raw import CONTAINER
from kfbox.serving.selectors import field_selector, label_selector

METRICS = "/apis/metrics.k8s.io/v1beta1"
MIN_WINDOW = 0.5
"""The shortest span, in seconds, a CPU rate is measured over."""


class Sampler:
    """The last (CPU seconds, monotonic time) read for each replica process, so a rate needs no wait when asked
    again."""

    def __init__(self) -> None:
        self.marks: dict[int, tuple[float, float]] = {}

    async def usage(self, pids: list[int]) -> dict[int, tuple[float, int, float]]:
        """(CPU cores, resident bytes, seconds the CPU was measured over) of each live process of ``pids``."""
        first = {pid: self.marks.get(pid) for pid in pids}
        now = time.monotonic()
        if any(mark is None or now - mark[1] < MIN_WINDOW for mark in first.values()):
            for pid, mark in first.items():
                if mark is None or now - mark[1] < MIN_WINDOW:
                    reading = read_proc(pid)
                    first[pid] = (reading[0], now) if reading is not None else None
            await asyncio.sleep(MIN_WINDOW)
        now = time.monotonic()
        found = {}
        for pid, mark in first.items():
            reading = read_proc(pid)
            if reading is None or mark is None:
                self.marks.pop(pid, None)
                continue
            window = max(now - mark[1], 1e-6)
            found[pid] = (max(0.0, reading[0] - mark[0]) / window, reading[1], window)
            self.marks[pid] = (reading[0], now)
        for pid in set(self.marks) - set(pids):
            del self.marks[pid]
        return found


def _metrics(item: PodReplica, cores: float, rss: int, window: float) -> dict[str, Any]:
    meta = item.pod["metadata"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta["labels"],
                         "creationTimestamp": now},
            "timestamp": now, "window": f"{round(window * 1000)}ms",
            "containers": [{"name": CONTAINER, "usage": {"cpu": f"{round(cores * 1e9)}n",
                                                           "memory": f"{rss // 1024}Ki"}}]}


def metrics_router(watch: PodWatch) -> APIRouter:
    router = APIRouter(tags=["kubernetes pod metrics"], include_in_schema=False)
    sampler = Sampler()

    async def measured(request: Request, namespace: str | None, name: str | None = None) -> list[dict[str, Any]]:
        q = request.query_params
        matches_labels, matches_fields = label_selector(q.get("labelSelector")), \
            field_selector(q.get("fieldSelector"), FIELDS)
        items = [item for item in watch.refresh()
                 if (namespace is None or item.pod["metadata"]["namespace"] == namespace)
                 and (name is None or item.pod["metadata"]["name"] == name)
                 and matches_labels(item.pod) and matches_fields(item.pod) and item.replica.child.alive]
        usage = await sampler.usage([item.replica.child.pid for item in items])
        return [_metrics(item, *usage[item.replica.child.pid]) for item in items if item.replica.child.pid in usage]

    def listed(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}

    @router.get(METRICS + "/pods")
    async def list_all(request: Request) -> dict[str, Any]:
        return listed(await measured(request, None))

    @router.get(METRICS + "/namespaces/{namespace}/pods")
    async def list_namespaced(namespace: str, request: Request) -> dict[str, Any]:
        return listed(await measured(request, namespace))

    @router.get(METRICS + "/namespaces/{namespace}/pods/{name}")
    async def get(namespace: str, name: str, request: Request) -> dict[str, Any]:
        found = await measured(request, namespace, name)
        if not found:
            raise KubeNotFound(404, "NotFound", f'podmetrics.metrics.k8s.io "{namespace}/{name}" not found',
                               name=name, kind="pods", group="metrics.k8s.io")
        return found[0]

    return router
