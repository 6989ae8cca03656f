"""``kfbox loadtest --plot``: the dashboard's live chart of the run, as an SVG file.

The report becomes the live charts' JSON shape (one point a second: requests/s, success,
p50/p95/p99, in flight, desired and ready replicas) and :mod:`kfbox.chart_svg`
draws it, so the file shows the same panels and series as the deployment page. SVG only:
no library installed here rasterises SVG (convert with e.g. ``rsvg-convert -o out.png out.svg``).
"""

from __future__ import annotations

import collections
import math
from pathlib import Path
from typing import Any

from kfbox.chart_svg import SERVICE_PANELS, render
from kfbox.errors import InvalidInput
from kfbox.loadtest.report import Report

FORMATS = (".svg",)
SLIVER = 0.25
"""Seconds: a last second shorter than this is not drawn (the summary counts its requests)."""


def check_plot_path(path: Path) -> None:
    """Fail before the run, not after it."""
    if path.suffix.lower() not in FORMATS:
        raise InvalidInput(f"Plot file {str(path)!r} must end with .svg, e.g. out.svg (convert it to PNG with "
                           "e.g. rsvg-convert -o out.png out.svg).")


def report_series(report: Report) -> dict[str, Any]:
    """The report as the live charts' series: one point at the end of each second of the run."""
    out: dict[str, Any] = {"source": "loadtest", "step": 1.0,
                           **{f: [] for f in ("t", "rps", "success", "p50", "p95", "p99", "inflight",
                                              "desired", "ready")}}
    samples = collections.deque(sorted(report.replicas, key=lambda s: s.t))

    def ms(value: float) -> float | None:
        return None if math.isnan(value) else round(value * 1000, 4)

    latest = None
    for second in report.timeline:
        # the run's last second is cut short by its end: its rate is over the part that ran; a sliver of one (the
        # requests still in flight at a -z deadline completing) is no point of its own: it read as a drop to ~c/s
        length = min(1.0, report.duration - second.start)
        if length < SLIVER and second is report.timeline[-1] and len(report.timeline) > 1:
            break
        end = second.start + 1
        while samples and samples[0].t <= end:
            latest = samples.popleft()
        out["t"].append(report.started_at + end)
        out["rps"].append(round((second.count + second.errors) / max(length, SLIVER), 2))
        out["success"].append(None if math.isnan(second.success) else round(second.success, 4))
        out["p50"].append(ms(second.p50))
        out["p95"].append(ms(second.p95))
        out["p99"].append(ms(second.p99))
        out["inflight"].append(float(second.inflight))
        out["ready"].append(latest.ready if latest else None)
        out["desired"].append(latest.desired if latest else None)
    return out


def write_plot(report: Report, path: Path) -> Path:
    """Draw the run as the live chart does; return the file written."""
    check_plot_path(path)
    title = f"{report.method} {report.url}  (c={report.concurrency}, {report.rps:.0f} req/s)"
    svg = render(report_series(report), SERVICE_PANELS, title=title,
                 label=lambda t: f"{t - report.started_at:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + svg, encoding="utf-8")
    return path
