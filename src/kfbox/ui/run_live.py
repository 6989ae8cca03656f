"""What the run page needs on every load and every poll, kept cheap at 600 tasks.

* :func:`task_states` reads a run's tasks as plain rows (one query, no ORM objects and none of the
  JSON columns: those are the task panel's, which reads the few tasks it shows in full).
* :class:`Layouts` keeps laid-out graphs per pipeline version (or per run, for a run submitted
  with an inline spec) and set of open groups: the layout depends on the IR only, and a version's
  IR never changes.
* :class:`LiveTasks` keeps the task rows of recently viewed runs and brings them up to date by
  reading only the tasks written since (each write to a run's tasks takes the next ``Run.task_seq``
  as their ``seq``). A page's version is ``generation.seq``; a poll with it gets what changed since,
  and a version from before a retry (or garbage) gets the whole state with ``reset: true``, as a
  Kubernetes watch answers an expired resourceVersion.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Callable
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


TASK_COLUMNS = (Task.id, Task.name, Task.path, Task.kind, Task.state, Task.created_ms, Task.started_ms,
                Task.finished_ms, Task.cache_hit, Task.log_path, Task.seq)


def task_states(session: Session, run_id: str, after_seq: int | None = None) -> list[dict[str, Any]]:
    """A run's tasks as the graph and the task table show them, in creation order; with
    ``after_seq``, only those written after that change number (an index range, not the run's tasks)."""
    query = select(*TASK_COLUMNS).where(Task.run_id == run_id)
    if after_seq is not None:
        query = query.where(Task.seq > after_seq)
    rows = session.execute(query.order_by(Task.created_ms, Task.id))
    return [{"task_id": tid, "name": name, "path": path, "node": dag.ir_path(path), "kind": kind, "state": state,
             "created_ms": created, "started_ms": started, "finished_ms": finished,
             "duration_ms": (finished - started) if finished and started else None,
             "cache_hit": bool(cache_hit), "has_log": bool(log), "seq": seq}
            for tid, name, path, kind, state, created, started, finished, cache_hit, log, seq in rows]


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

    def get(self, key: str, spec: Callable[[], dict[str, Any]], expanded: set[str]) -> dag.Graph:
        """The graph, laid out from ``spec()`` only when not held (a poll need not load the spec)."""
        cache_key = (key, frozenset(expanded))
        graph = self._graphs.get(cache_key)
        if graph is None:
            graph = dag.build_graph(spec(), expanded)
            self._graphs.put(cache_key, graph)
        return graph


def generation(state_history: list[dict[str, Any]] | None) -> int:
    """How many times the run was queued: a retry deletes the tasks it reruns, which no change number
    can show, so a poll from an earlier generation gets everything again."""
    return sum(1 for h in state_history or [] if h.get("state") == "PENDING")


@dataclasses.dataclass
class TaskTable:
    """A run's task rows as last read, and the change number they were read at."""

    generation: int
    seq: int
    tasks: dict[str, dict[str, Any]]  # task id -> row, in creation order

    @property
    def version(self) -> str:
        return f"{self.generation}.{self.seq}"

    def changed_after(self, seq: int) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if t["seq"] > seq]


def parse_version(version: str) -> tuple[int, int] | None:
    """``"generation.seq"`` as the page got it; None for anything else (then the poll starts over)."""
    head, _, tail = version.partition(".")
    return (int(head), int(tail)) if head.isdigit() and tail.isdigit() else None


class LiveTasks:
    """The task rows of recently viewed runs, brought up to date with only the rows written since.

    A poll reads the run's row (its change number and generation); when the number moved it reads
    the tasks with a higher ``seq`` (index ``ix_pipelines_tasks_run_seq``) and merges them in. A run
    not held, or queued again since (a retry deleted tasks), is read whole.
    """

    def __init__(self, size: int = 64) -> None:
        self._runs: Bounded[str, TaskTable] = Bounded(size)
        self._lock = threading.Lock()

    def read(self, session: Session, run_id: str, gen: int, seq: int, whole: bool = False) -> TaskTable:
        held = None if whole else self._runs.get(run_id)
        if held is not None and held.generation == gen and held.seq >= seq:
            return held
        if held is None or held.generation != gen:
            rows = task_states(session, run_id)
            table = TaskTable(gen, max([seq, *(t["seq"] for t in rows)]), {t["task_id"]: t for t in rows})
        else:
            rows = task_states(session, run_id, held.seq)
            merged = dict(held.tasks)
            merged.update((t["task_id"], t) for t in rows)
            if any(t["task_id"] not in held.tasks for t in rows):  # new tasks: keep creation order
                merged = dict(sorted(merged.items(), key=lambda kv: (kv[1]["created_ms"], kv[0])))
            table = TaskTable(gen, max([seq, *(t["seq"] for t in rows)]), merged)
        with self._lock:  # another poll may have read further meanwhile: keep the newer
            current = self._runs.get(run_id)
            if current is None or (current.generation, current.seq) <= (table.generation, table.seq):
                self._runs.put(run_id, table)
        return table


def affected(tasks: list[dict[str, Any]]) -> set[str]:
    """The drawn ids whose state can follow from these tasks': their nodes and every group above."""
    ids: set[str] = set()
    for t in tasks:
        parts = t["node"].split("/")
        ids.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return ids
