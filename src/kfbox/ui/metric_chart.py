"""Compare runs: one small SVG chart per metric, drawn on the server (no chart library).

A metric a run logged several times (one system.Metrics artifact per epoch, loop iteration or
retry) is a history: one line per run over the logging steps. A metric every run logged once is
one point per run, across the compared runs in the order picked, the best one ringed.

Example::

    chart = metric_chart("loss", [("run-a", [0.9, 0.5]), ("run-b", [0.8])], best=None)
    svg = chart_svg(chart)
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 460, 190, 52, 12, 14, 34
PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#bc4c00", "#57606a"]


def metric_chart(metric: str, series: list[tuple[str, list[float]]], best: int | None) -> dict[str, Any]:
    """The chart's data: ``kind`` is "history" (steps on x, a line per run) or "runs" (a point per run)."""
    history = any(len(values) > 1 for _, values in series)
    if history:
        lines = [{"run": name, "points": [[step + 1, v] for step, v in enumerate(values)]}
                 for name, values in series if values]
    else:
        lines = [{"run": "", "points": [[i + 1, values[-1]] for i, (_, values) in enumerate(series) if values]}]
    return {"metric": metric, "kind": "history" if history else "runs", "lines": lines, "best": best,
            "runs": [name for name, _ in series]}


def chart_svg(chart: dict[str, Any]) -> Markup:
    """The chart as accessible SVG: a title, axes with their ranges, each point's value in a <title>."""
    points = [p for line in chart["lines"] for p in line["points"]]
    if not points:
        return Markup("")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_max = max(max(xs), 2)
    y_lo, y_hi = low, high = min(ys), max(ys)
    if y_lo == y_hi:
        y_lo, y_hi = y_lo - 0.5 * (abs(y_lo) or 1), y_hi + 0.5 * (abs(y_hi) or 1)
    pad = (y_hi - y_lo) * 0.08  # points off the frame's edges
    y_lo, y_hi = y_lo - pad, y_hi + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        return (round(LEFT + (x - 1) / (x_max - 1) * plot_w, 1), round(TOP + (y_hi - y) / (y_hi - y_lo) * plot_h, 1))

    metric, history = chart["metric"], chart["kind"] == "history"
    what = f"{metric} per step, one line per run" if history else f"{metric}, one point per run"
    parts = [f'<svg class="chart metric-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             f'role="img" aria-label="{escape(what)}" data-metric="{escape(metric)}" data-kind="{chart["kind"]}">',
             f'<title>{escape(what)}</title>',
             f'<path class="axis" fill="none" d="M{LEFT},{TOP} V{TOP + plot_h} H{LEFT + plot_w}"/>',
             f'<text x="{LEFT - 6}" y="{at(1, high)[1] + 4}" text-anchor="end">{_num(high)}</text>']
    if low != high:
        parts.append(f'<text x="{LEFT - 6}" y="{at(1, low)[1] + 4}" text-anchor="end">{_num(low)}</text>')
    if history:
        parts.append(f'<text x="{LEFT}" y="{HEIGHT - 16}">step 1</text>'
                     f'<text x="{LEFT + plot_w}" y="{HEIGHT - 16}" text-anchor="end">step {x_max}</text>')
    else:
        for i, name in enumerate(chart["runs"]):
            x, _ = at(i + 1, y_lo)
            anchor = "start" if i == 0 else "end" if i == len(chart["runs"]) - 1 else "middle"
            parts.append(f'<text x="{x}" y="{HEIGHT - 16}" text-anchor="{anchor}">{escape(short(name, 18))}<title>{escape(name)}</title></text>')
    for n, line in enumerate(chart["lines"]):
        color = PALETTE[n % len(PALETTE)]
        coords = [at(x, y) for x, y in line["points"]]
        path = " ".join(f"{x},{y}" for x, y in coords)
        parts.append(f'<g class="series" data-run="{escape(line["run"])}"><polyline points="{path}" fill="none" '
                     f'stroke="{color}" stroke-width="2"/>')
        for (x, y), (step, value) in zip(coords, line["points"], strict=True):
            who = f"{line['run']} step {step}" if history else chart["runs"][step - 1]
            ring = not history and chart["best"] == step - 1
            mark = ' class="best"' if ring else ""
            parts.append(f'<circle cx="{x}" cy="{y}" r="{6 if ring else 3.5}" fill="{"#fff" if ring else color}" '
                         f'stroke="{color}" stroke-width="2"{mark}>'
                         f'<title>{escape(who)}: {_num(value)}{" (best)" if ring else ""}</title></circle>')
        parts.append("</g>")
    if history:
        for n, line in enumerate(chart["lines"]):
            y = HEIGHT - 3
            x = LEFT + n * 110
            parts.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{PALETTE[n % len(PALETTE)]}"/>'
                         f'<text x="{x + 14}" y="{y}">{escape(short(line["run"], 14))}'
                         f'<title>{escape(line["run"])}</title></text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def short(name: str, width: int) -> str:
    """``name`` in ``width`` characters, cut in the middle: compared runs' names tend to differ at the end
    (``iris-training-v1``/``-v2``), which a cut at the end hid from the legend."""
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[:width - 1 - tail] + "\u2026" + name[-tail:]


def _num(value: float) -> str:
    return f"{value:.4g}"
