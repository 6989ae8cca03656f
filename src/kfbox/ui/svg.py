"""The run graph and task table as markup, built in Python: at 600 nodes a Jinja loop with macros
costs ~250 ms a page, these string joins ~10 ms. Every value goes through ``esc`` (``html.escape``,
the same five characters as markupsafe's, without a Markup object per call: ~5,000 calls a page).
"""

from __future__ import annotations

from html import escape as esc
from typing import Any
from urllib.parse import quote

from markupsafe import Markup

from kfbox.ui.dag import NODE_H, NODE_W
from kfbox.ui.formats import duration, when


def tasks(count: int) -> str:
    """How many tasks ran inside a group (a loop of 3 iterations of 2 tasks: 6 tasks, which a bare "x6" hid)."""
    return f"{count} task{'' if count == 1 else 's'}"

def dag_svg(graph: dict[str, Any], expanded: list[str], open_param: str, panel_node: str = "",
            link_tasks: bool = True, base_query: str = "") -> Markup:
    """The graph as an SVG: every node a link (open a group, or show a task's panel); an open group
    is a dashed box around its tasks whose label closes it."""
    items = {n["id"]: (n["x"], n["y"], NODE_W, NODE_H) for n in graph["nodes"]}
    boxes = graph.get("boxes", [])
    items.update((b["id"], (b["x"], b["y"], b["w"], b["h"])) for b in boxes)
    parts = [f'<div class="dag-wrap"><svg class="dag" id="dag" width="{graph["width"]}" height="{graph["height"]}" '
             f'viewBox="0 0 {graph["width"]} {graph["height"]}" role="group" aria-label="Pipeline graph">']
    for b in boxes:
        raw = b["state"] or ""
        state = esc(raw)
        closed = [g for g in expanded if g != b["id"] and not g.startswith(b["id"] + "/")]
        href = f"?{base_query}open={quote(','.join(closed))}"
        what = f"{b['label']} ({b['kind']}): {raw.lower() or 'not started'} (close group)"
        parts.append(f'<g class="box kind-{b["kind"]}" data-node="{esc(b["id"])}" data-state="{state}">'
                     f'<rect x="{b["x"]}" y="{b["y"]}" width="{b["w"]}" height="{b["h"]}"/>'
                     f'<a href="{esc(href)}" aria-label="{esc(what)}"><text x="{b["x"] + 8}" y="{b["y"] + 17}">'
                     f'\u25be {esc(b["label"][:40])} <tspan class="sub">{esc(b["kind"])} · {tasks(b["count"])} '
                     f'<tspan data-state-text>{state.lower()}</tspan></tspan></text></a></g>')
    for a, b in graph["edges"]:
        sx, sy, sw, sh = items[a]
        tx, ty, tw, _ = items[b]
        x1, y1, x2, y2 = sx + sw // 2, sy + sh, tx + tw // 2, ty
        # the arrowhead is two strokes of the same path: 600 marker instances cost Chromium more than the rest of the edges
        parts.append(f'<path class="edge" d="M{x1},{y1} C{x1},{y1 + 28} {x2},{y2 - 28} {x2},{y2} l-4,-7 m4,7 l4,-7"/>')
    keep_open = f"&open={quote(open_param)}" if open_param else ""
    for n in graph["nodes"]:
        raw = n["state"] or ""
        state = esc(raw)
        label = esc(n["label"][:26])
        sub = "" if n["kind"] == "task" else n["kind"]
        if n["expandable"] and n["count"]:
            sub += f" · {tasks(n['count'])}"
        selected = " selected" if panel_node and n["id"] == panel_node else ""
        group = (f'<g class="node kind-{n["kind"]}{selected}" data-node="{esc(n["id"])}" data-state="{state}" '
                 f'transform="translate({n["x"]},{n["y"]})"><rect width="{NODE_W}" height="{NODE_H}"/>'
                 f'<text x="10" y="16">{label}</text><text x="10" y="31" class="sub">{esc(sub)} '
                 f'<tspan data-state-text>{state.lower()}</tspan></text></g>')
        if n["expandable"]:
            href = f"?{base_query}open={quote(','.join([*expanded, n['id']]))}"
        elif link_tasks:
            href = f"?{base_query}task={quote(n['id'])}{keep_open}"
        else:
            parts.append(group)
            continue
        what = f"{n['label']}: {raw.lower() or 'not started'}" + (" (open group)" if n["expandable"] else "")
        parts.append(f'<a href="{esc(href)}" aria-label="{esc(what)}">{group}</a>')
    parts.append("</svg></div>")
    return Markup("".join(parts))


def task_rows(tasks: list[dict[str, Any]], open_param: str) -> Markup:
    """The task table's rows (same columns as the template's header)."""
    keep_open = esc(f"&open={quote(open_param)}" if open_param else "")
    rows = []
    for t in tasks:
        state = esc(t["state"])
        path = esc(t["path"])
        rows.append(f'<tr data-task="{esc(t["task_id"])}"><td><a href="?task={esc(quote(t["path"]))}{keep_open}">'
                    f'{path}</a></td><td data-cell="state"><span class="state state-{state.lower()}">{state}</span></td>'
                    f'<td>{when(t["started_ms"])}</td><td class="num">{duration(t["duration_ms"])}</td>'
                    f'<td>{"hit" if t["cache_hit"] else ""}</td></tr>')
    return Markup("".join(rows))
