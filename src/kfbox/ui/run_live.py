"""What the run page needs on every load and every poll, kept cheap at 600 tasks.

* :func:`task_states` reads a run's tasks as plain rows (one query, no ORM objects and none of the
  JSON columns: those are the task panel's, which reads the few tasks it shows in full).
* :class:`Layouts` keeps laid-out graphs per pipeline version (or per run, for a run submitted
  with an inline spec) and set of open groups: the layout depends on the IR only, and a version's
  IR never changes.
* :class:`Deltas` answers a poll with what changed since the version the page last saw: the
  server keeps the last snapshots it sent (bounded); a version it no longer has gets the whole
  state again with ``reset: true``, as a Kubernetes watch answers an expired resourceVersion.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from kfbox.pipelines.tables import Task
from kfbox.ui import dag

K = TypeVar("K")
V = TypeVar("V")


class Bounded(Generic[K, V]):
    """A thread-safe dict that forgets its least recently used entries past ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def task_states(session: Session, run_id: str) -> list[dict[str, Any]]:
    """A run's tasks as the graph and the task table show them, in creation order."""
    rows = session.execute(select(Task.id, Task.name, Task.path, Task.kind, Task.state, Task.started_ms,
                                  Task.finished_ms, Task.cache_hit, Task.log_path)
                           .where(Task.run_id == run_id).order_by(Task.created_ms, Task.id))
    return [{"task_id": tid, "name": name, "path": path, "node": dag.ir_path(path), "kind": kind, "state": state,
             "started_ms": started, "finished_ms": finished,
             "duration_ms": (finished - started) if finished and started else None,
             "cache_hit": bool(cache_hit), "has_log": bool(log)}
            for tid, name, path, kind, state, started, finished, cache_hit, log in rows]


def node_state_lists(tasks: list[dict[str, Any]]) -> dict[str, list[str]]:
    """IR path -> the states of the record tasks at that path (loop iterations share one path)."""
    states: dict[str, list[str]] = {}
    for t in tasks:
        if t["node"]:
            states.setdefault(t["node"], []).append(t["state"])
    return states


class Layouts:
    """Laid-out graphs by (pipeline version or run, open groups)."""

    def __init__(self, size: int = 64) -> None:
        self._graphs: Bounded[tuple[str, frozenset[str]], dag.Graph] = Bounded(size)

    def get(self, key: str, spec: dict[str, Any], expanded: set[str]) -> dag.Graph:
        cache_key = (key, frozenset(expanded))
        graph = self._graphs.get(cache_key)
        if graph is None:
            graph = dag.build_graph(spec, expanded)
            self._graphs.put(cache_key, graph)
        return graph


def snapshot(run_state: str, nodes: dict[str, str], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a poll compares: the run's state, each drawn node's state, each task's state."""
    return {"run": run_state, "nodes": nodes, "tasks": {t["task_id"]: t["state"] for t in tasks}}


def version_of(snap: dict[str, Any]) -> str:
    digest = hashlib.blake2b(digest_size=8)
    digest.update(snap["run"].encode())
    for part in ("nodes", "tasks"):
        for key, value in sorted(snap[part].items()):
            digest.update(f"\0{key}\0{value}".encode())
    return digest.hexdigest()


class Deltas:
    """The snapshots recently sent, by (run, open groups, version), to diff the next poll against."""

    def __init__(self, size: int = 512) -> None:
        self._sent: Bounded[tuple[str, str, str], dict[str, Any]] = Bounded(size)

    def since(self, run_id: str, open_param: str, since: str, snap: dict[str, Any],
              tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """``{version, reset, nodes: {id: state}, tasks: [...]}`` holding only what changed since ``since``."""
        version = version_of(snap)
        self._sent.put((run_id, open_param, version), snap)
        before = self._sent.get((run_id, open_param, since)) if since else None
        if before is None:
            return {"version": version, "reset": True, "nodes": snap["nodes"], "tasks": tasks}
        nodes = {k: v for k, v in snap["nodes"].items() if before["nodes"].get(k) != v}
        changed = [t for t in tasks if before["tasks"].get(t["task_id"]) != t["state"]]
        return {"version": version, "reset": False, "nodes": nodes, "tasks": changed}
