"""The live chart as SVG markup: stacked panels on one time axis, drawn from the charts' JSON shape.

One renderer for every picture of a deployment's load: the dashboard's live charts (the
series endpoints add it as ``"svg"`` and ``/static/charts.js`` swaps it in) and
``kfbox loadtest --plot`` (a load test's report turned into the same JSON shape). Pure
string building, no server imports, every label escaped.

Example::

    svg = render({"t": [...], "rps": [...], "p99": [...], ...}, SERVICE_PANELS)
"""

from __future__ import annotations

import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

W, H, LEFT, RIGHT, GAP = 720, 92, 52, 8, 18


@dataclass(frozen=True)
class Panel:
    title: str
    fields: tuple[tuple[str, str, str], ...]
    """(series field, colour, legend label)."""
    scale: float = 1.0
    max: float = 0.0
    whole: bool = False
    """Counts (replicas, runs): the axis reads a whole number."""


SERVICE_PANELS: tuple[Panel, ...] = (
    Panel("requests/s", (("rps", "#2563eb", "req/s"),)),
    Panel("success %", (("success", "#16a34a", "success"),), scale=100, max=100),
    Panel("latency ms", (("p50", "#0891b2", "p50"), ("p95", "#d97706", "p95"), ("p99", "#dc2626", "p99"))),
    Panel("replicas · in flight", (("desired", "#7c3aed", "desired"), ("ready", "#16a34a", "ready"),
                                   ("inflight", "#64748b", "in flight")), whole=True),
)
PIPELINE_PANELS: tuple[Panel, ...] = (
    Panel("runs queued · running", (("pending", "#d97706", "pending"), ("running", "#2563eb", "running")),
          whole=True),
    Panel("runs finished", (("succeeded", "#16a34a", "succeeded"), ("failed", "#dc2626", "failed")), whole=True),
)


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def _fmt(v: float | None, digits: int) -> str:
    if v is None:
        return "\u2013"  # an en dash, as the page shows no value
    rounded = round(v, digits)
    return str(int(rounded)) if rounded == int(rounded) else str(rounded)


def _digits(v: float | None, scale: float) -> int:
    """Decimals a legend shows: about three significant digits (1560 req/s, 12.4 ms, 1.92 ms), not 1559.99."""
    size = abs(v * scale) if v is not None else 0.0
    return 0 if size >= 100 else 1 if size >= 10 else 2


def _last(values: Sequence[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def render(data: dict[str, Any], panels: Sequence[Panel] = SERVICE_PANELS, *, title: str = "",
           label: Callable[[float], str] = clock) -> str:
    """The panels for ``data`` (``{"t": [...], field: [value or None, ...]}``) as one ``<svg>`` element."""
    t: list[float] = list(data.get("t") or [])
    top_pad = 16 if title else 0
    height = len(panels) * (H + GAP) + 16 + top_pad
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
             f'role="img" class="chart" aria-label="live metrics">']
    if title:
        parts.append(f'<text x="4" y="11" font-size="10" fill="#0f172a">{escape(title)}</text>')
    t0, t1 = (t[0], t[-1]) if t else (0.0, 1.0)
    span = max(t1 - t0, 1.0)

    def x(ti: float) -> float:
        return LEFT + (W - LEFT - RIGHT) * (ti - t0) / span

    for p, panel in enumerate(panels):
        top = p * (H + GAP) + 12 + top_pad
        high = panel.max
        for field, _, _ in panel.fields:
            for v in data.get(field) or []:
                if v is not None and v * panel.scale > high:
                    high = v * panel.scale
        # headroom above the highest value, except for a bounded quantity within its bound (a percent's axis
        # reads 100, not 110)
        high = panel.max if 0 < high <= panel.max else high * 1.1 if high > 0 else 1.0
        if panel.whole:
            high = float(math.ceil(high))
        parts.append(f'<g class="panel" data-title="{escape(panel.title)}">'
                     f'<rect x="{LEFT}" y="{top}" width="{W - LEFT - RIGHT}" height="{H}" fill="none" '
                     f'stroke="#cbd5e1"/><text x="4" y="{top + 10}" font-size="10" fill="#334155">'
                     f'{escape(panel.title)}</text><text x="{LEFT - 4}" y="{top + 20}" font-size="9" '
                     f'text-anchor="end" fill="#64748b">{_fmt(high, 2 if high < 10 else 0)}</text>')
        legend = LEFT + 6
        for field, colour, name in panel.fields:
            values = list(data.get(field) or [])
            runs: list[list[tuple[float, float]]] = []  # stretches of samples with no gap between them
            pen = False
            for ti, v in zip(t, values, strict=False):
                if v is None:
                    pen = False
                    continue
                y = max(top + 1.0, top + H - H * min(v * panel.scale, high) / high)  # a top line inside the frame
                if not pen:
                    runs.append([])
                runs[-1].append((x(ti), y))
                pen = True
            d = "".join(f"{'L' if i else 'M'}{px:.1f} {py:.1f}" for run in runs for i, (px, py) in enumerate(run))
            if d:
                parts.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.5" '
                             f'data-field="{field}"/>')
            # a sample alone between gaps (a burst shorter than the sampling interval) is a dot, not nothing
            parts += [f'<circle cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="2.5" fill="{colour}" '
                      f'data-field="{field}"/>' for run in runs if len(run) == 1]
            now = _last(values)
            parts.append(f'<text x="{legend}" y="{top + H + 12}" font-size="9" fill="{colour}" '
                         f'data-legend="{field}">{escape(name)} '
                         f'{_fmt(None if now is None else now * panel.scale, _digits(now, panel.scale))}</text>')
            legend += 110
        parts.append("</g>")
    if t:
        bottom = len(panels) * (H + GAP) + 12 + top_pad
        parts.append(f'<text x="{LEFT}" y="{bottom}" font-size="9" fill="#64748b">{escape(label(t0))}</text>'
                     f'<text x="{W - RIGHT}" y="{bottom}" font-size="9" fill="#64748b" text-anchor="end">'
                     f'{escape(label(t1))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def panels_of(svg: str) -> list[tuple[str, list[str]]]:
    """(panel title, legend fields) of a chart this module drew: what two pictures must share."""
    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg.split("?>", 1)[1] if svg.startswith("<?xml") else svg)
    return [(g.get("data-title", ""), [t.get("data-legend", "") for t in g.iter(f"{ns}text") if t.get("data-legend")])
            for g in root.iter(f"{ns}g") if g.get("class") == "panel"]
