"""The run graph, drawn from the pipeline's IR (so it works with any run record).

Nodes are the IR's tasks; a task whose component is itself a DAG (a sub-pipeline, a
``ParallelFor`` loop, a ``dsl.If`` condition) is one collapsed node until the user expands it,
and then it is drawn as a labelled box with its inner tasks laid out inside (edges into and out
of the group meet the box). States come from the run record: a record task's ``path`` with the
loop iteration segments removed is the IR node's path, and a collapsed node or a box shows the
combined state of everything inside it.

Layout is layered, per level (the root DAG, then each open group inside its box): an item's row
is its longest dependency chain among its siblings, its column its order in the row (ordered by
the mean column of its parents, one pass); rows are as tall as their tallest item, so a box
pushes what follows down. Linear in nodes + edges: a 600-task graph lays out in milliseconds.

The layout depends on the IR and the open groups only, never on states, so a laid-out
:class:`Graph` is reused across polls and runs (:meth:`Graph.as_json` adds the states).

Example::

    graph = build_graph(spec, expanded={"for-loop-2"})
    drawn = graph.as_json(states={"train": ["SUCCEEDED"]})
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from kfbox.pipelines import spec as specs

NODE_W, NODE_H, GAP_X, GAP_Y, MARGIN = 190, 38, 24, 56, 16
BOX_PAD, BOX_HEAD = 12, 26
LABEL_CHAR_W = 6.6  # px per character of the 12px label font, for sizing a box to its title
_ITERATION = re.compile(r"-iteration-\d+$")
RANK = {"FAILED": 6, "RUNNING": 5, "CANCELING": 4, "PENDING": 3, "CANCELED": 2, "SUCCEEDED": 1, "SKIPPED": 0}


@dataclasses.dataclass
class Node:
    id: str                 # IR path: "outer/inner"
    label: str
    kind: str               # "task", "dag", "loop", "condition", "importer"
    depends: list[str]      # ids of sibling items it waits for
    expandable: bool = False
    expanded_from: str = ""  # the open group this node is drawn inside, if any
    inner: list[Node] | None = None  # an open group: its items, drawn inside its box
    row: int = 0
    col: int = 0
    x: int = 0
    y: int = 0
    w: int = NODE_W
    h: int = NODE_H


@dataclasses.dataclass
class Graph:
    nodes: list[Node]       # what is drawn as a node: tasks and collapsed groups
    boxes: list[Node]       # open groups, outermost first
    edges: list[tuple[Node, Node]]
    width: int
    height: int
    groups: list[str]       # every expandable node id in the IR (for "expand all")

    def as_json(self, states: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """The drawing with the states of the record tasks (``states``: IR path -> their states)."""
        states = states or {}
        inner = self._inner(states)
        nodes = []
        for n in self.nodes:
            state, count = _state(n, states, inner)
            nodes.append({"id": n.id, "label": n.label, "kind": n.kind, "state": state, "count": count,
                          "expandable": n.expandable, "x": n.x, "y": n.y, "depends": n.depends})
        boxes = []
        for b in self.boxes:
            state, count = _state(b, states, inner)
            boxes.append({"id": b.id, "label": b.label, "kind": b.kind, "state": state, "count": count,
                          "x": b.x, "y": b.y, "w": b.w, "h": b.h})
        return {"nodes": nodes, "boxes": boxes, "edges": [[a.id, b.id] for a, b in self.edges],
                "width": self.width, "height": self.height}

    def node_states(self, states: dict[str, list[str]], only: set[str] | None = None) -> dict[str, str]:
        """Drawn id -> state, as :meth:`as_json` has them (``only``: those ids and the nodes drawn inside them)."""
        inner = self._inner(states)
        return {n.id: _state(n, states, inner)[0] for n in (*self.nodes, *self.boxes)
                if only is None or n.id in only or n.expanded_from in only}

    def _inner(self, states: dict[str, list[str]]) -> dict[str, list[str]]:
        """Group id -> the states of every record task below it (for collapsed nodes and boxes)."""
        inner: dict[str, list[str]] = {}
        if self.boxes or any(n.expandable for n in self.nodes):
            for path, found in states.items():
                parts = path.split("/")
                for i in range(1, len(parts)):
                    inner.setdefault("/".join(parts[:i]), []).extend(found)
        return inner


def _state(n: Node, states: dict[str, list[str]], inner: dict[str, list[str]]) -> tuple[str, int]:
    own = states.get(n.id, [])
    if n.expandable:
        below = inner.get(n.id, [])
        # the group's own record (engines that record DAG nodes) wins; else what ran inside it
        return (combine(own) if own else combine(below)), len(below)
    state = combine(own)
    if not state and n.expanded_from and "SKIPPED" in states.get(n.expanded_from, []):
        state = "SKIPPED"  # inside a branch that was not taken
    return state, len(own)


def ir_path(record_path: str) -> str:
    """``for-loop-2/for-loop-2-iteration-3/train`` -> ``for-loop-2/train``."""
    return "/".join(p for p in record_path.split("/") if p and not _ITERATION.search(p))


def combine(states: list[str]) -> str:
    """The state a group shows: any failure wins, then activity, then completion."""
    if not states:
        return ""
    return max(states, key=lambda s: RANK.get(s, 3))


def count_nodes(spec: dict[str, Any]) -> int:
    """All task nodes in the IR, nested ones included (decides graph vs. table)."""
    pipeline = specs.pipeline_part(spec)
    components = pipeline.get("components", {})
    total, seen = 0, set()
    stack = [pipeline.get("root", {})]
    while stack:
        comp = stack.pop()
        for task in comp.get("dag", {}).get("tasks", {}).values():
            total += 1
            ref = task.get("componentRef", {}).get("name", "")
            if ref in components and "dag" in components[ref] and ref not in seen:
                seen.add(ref)
                stack.append(components[ref])
    return total


def _children(spec: dict[str, Any], component: dict[str, Any], prefix: str, expanded: set[str],
              origin: str) -> tuple[list[Node], list[str]]:
    """The items of one DAG component (open groups carry their own items) and every group id below it."""
    components = specs.pipeline_part(spec).get("components", {})
    tasks: dict[str, Any] = component.get("dag", {}).get("tasks", {})
    items: list[Node] = []
    groups: list[str] = []
    for name, task in tasks.items():
        node_id = f"{prefix}/{name}" if prefix else name
        comp = components.get(task.get("componentRef", {}).get("name", ""), {})
        is_group = "dag" in comp
        kind = ("loop" if "parameterIterator" in task or "artifactIterator" in task
                else "condition" if task.get("triggerPolicy", {}).get("condition") or name.startswith("condition-")
                else "dag" if is_group else "importer" if "importer" in str(comp.get("executorLabel", "")) else "task")
        depends = [f"{prefix}/{d}" if prefix else d for d in task.get("dependentTasks", [])
                   if d in tasks and d != name]
        label = task.get("taskInfo", {}).get("name") or name
        node = Node(node_id, label, kind, depends, expandable=is_group, expanded_from=origin)
        if is_group:
            groups.append(node_id)
            inner, inner_groups = _children(spec, comp, node_id, expanded, node_id)
            groups.extend(inner_groups)
            if node_id in expanded and inner:
                node.inner = inner
        items.append(node)
    return items, groups


def build_graph(spec: dict[str, Any], expanded: set[str] | None = None) -> Graph:
    """Lay out the IR with the groups in ``expanded`` open (drawn as boxes)."""
    root = specs.pipeline_part(spec).get("root", {})
    items, groups = _children(spec, root, "", expanded or set(), "")
    width, height = _layout(items)
    nodes: list[Node] = []
    boxes: list[Node] = []
    edges: list[tuple[Node, Node]] = []
    _place(items, MARGIN, MARGIN, nodes, boxes, edges)
    return Graph(nodes, boxes, edges, 2 * MARGIN + width, 2 * MARGIN + height, groups)


def _layout(items: list[Node]) -> tuple[int, int]:
    """Rows, columns and sizes of one level (open groups first, inside out); returns its size."""
    for n in items:
        if n.inner is not None:
            w, h = _layout(n.inner)
            label = len(n.label[:40]) + len(n.kind) + 24  # the title line: arrow, label, kind, task count, state
            n.w, n.h = max(NODE_W, w + 2 * BOX_PAD, int(label * LABEL_CHAR_W)), h + BOX_HEAD + BOX_PAD
    by_id = {n.id: n for n in items}
    # Kahn's order: a node's row is one more than its deepest dependency's (cycles, which the
    # compiler never makes, end up in row 0 instead of looping)
    waiting = {n.id: len(n.depends) for n in items}
    users: dict[str, list[Node]] = {}
    for n in items:
        for d in n.depends:
            users.setdefault(d, []).append(n)
    row = {n.id: 0 for n in items}
    ready = [n for n in items if not n.depends]
    while ready:
        n = ready.pop()
        for user in users.get(n.id, []):
            row[user.id] = max(row[user.id], row[n.id] + 1)
            waiting[user.id] -= 1
            if waiting[user.id] == 0:
                ready.append(user)
    layers: dict[int, list[Node]] = {}
    for n in items:
        n.row = row[n.id]
        layers.setdefault(n.row, []).append(n)
    width = height = 0
    for r in sorted(layers):
        layer = layers[r]
        if r:
            layer.sort(key=lambda n: (sum(by_id[d].col for d in n.depends) / len(n.depends) if n.depends else 0,
                                      n.id))
        x = 0
        for col, n in enumerate(layer):
            n.col, n.x, n.y = col, x, height
            x += n.w + GAP_X
        width = max(width, x - GAP_X)
        height += max(n.h for n in layer) + GAP_Y
    return width, max(0, height - GAP_Y)


def _place(items: list[Node], dx: int, dy: int, nodes: list[Node], boxes: list[Node],
           edges: list[tuple[Node, Node]]) -> None:
    """Make a level's positions absolute and collect what is drawn."""
    by_id = {n.id: n for n in items}
    for n in items:
        n.x, n.y = n.x + dx, n.y + dy
        if n.inner is not None:
            boxes.append(n)
            _place(n.inner, n.x + BOX_PAD, n.y + BOX_HEAD, nodes, boxes, edges)
        else:
            nodes.append(n)
    edges.extend((by_id[d], n) for n in items for d in n.depends if d in by_id)


def ir_task(spec: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The IR task at ``path`` (iteration segments allowed) and its component, or None."""
    pipeline = specs.pipeline_part(spec)
    components = pipeline.get("components", {})
    component: dict[str, Any] = pipeline.get("root", {})
    task: dict[str, Any] | None = None
    for name in ir_path(path).split("/"):
        task = component.get("dag", {}).get("tasks", {}).get(name)
        if task is None:
            return None
        component = components.get(task.get("componentRef", {}).get("name", ""), {})
    return (task, component) if task is not None else None


def describe_inputs(task: dict[str, Any]) -> list[dict[str, str]]:
    """A task's inputs as the IR wires them: a constant, a pipeline parameter, or another task's output."""
    rows: list[dict[str, str]] = []
    inputs = task.get("inputs", {})
    for name, value in sorted(inputs.get("parameters", {}).items()):
        rows.append({"name": name, "kind": "parameter", "source": _source(value)})
    for name, value in sorted(inputs.get("artifacts", {}).items()):
        rows.append({"name": name, "kind": "artifact", "source": _source(value)})
    return rows


def _source(value: dict[str, Any]) -> str:
    if "runtimeValue" in value:
        return repr(value["runtimeValue"].get("constant", value["runtimeValue"]))
    if "componentInputParameter" in value:
        return f"pipeline parameter {value['componentInputParameter']}"
    if "componentInputArtifact" in value:
        return f"pipeline input {value['componentInputArtifact']}"
    for key in ("taskOutputParameter", "taskOutputArtifact"):
        if key in value:
            ref = value[key]
            return f"{ref.get('producerTask')}.{ref.get('outputParameterKey') or ref.get('outputArtifactKey')}"
    if "taskFinalStatus" in value:
        return "final status of the run"
    return str(value)
