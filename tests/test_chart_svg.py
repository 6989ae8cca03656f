"""kfbox.chart_svg: what the live charts' axes say."""

from __future__ import annotations

import re

from kfbox.chart_svg import GAP, SERVICE_PANELS, H, render


def axis_tops(svg: str) -> dict[str, str]:
    """Panel title -> the value its axis shows at the top."""
    return dict(re.findall(r'data-title="([^"]+)">.*?text-anchor="end" fill="#64748b">([^<]+)</text>', svg))


def test_a_percent_axis_reads_100_and_its_line_stays_inside_the_frame() -> None:
    svg = render({"t": [0.0, 1.0, 2.0], "success": [1.0, 1.0, 0.5], "rps": [10.0, 20.0, 30.0]}, SERVICE_PANELS)
    tops = axis_tops(svg)
    assert tops["success %"] == "100"
    assert tops["requests/s"] == "33"  # unbounded quantities keep 10% headroom above their highest value
    frame = 12 + H + GAP  # success % is the second panel; the first one's frame starts at y=12
    path = svg.split('data-field="success"')[0].rsplit("<path", 1)[1]
    ys = [float(y) for y in re.findall(r"[ML][0-9.]+ ([0-9.]+)", path)]
    assert ys and min(ys) > frame and max(ys) < frame + H


def test_a_percent_above_its_bound_widens_the_axis() -> None:
    svg = render({"t": [0.0, 1.0], "success": [1.0, 1.2]}, SERVICE_PANELS)
    assert axis_tops(svg)["success %"] == "132"
