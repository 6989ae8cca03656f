"""kfbox.chart_svg: what the live charts' axes say."""

from __future__ import annotations

import re

from kfbox.chart_svg import GAP, PIPELINE_PANELS, SERVICE_PANELS, H, render


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


def test_a_sample_alone_between_gaps_is_drawn_as_a_dot() -> None:
    """A load test shorter than the sampling interval leaves one latency sample between empty ones: a path
    of one point draws nothing, so the chart showed a legend (p99 5 ms) over an empty panel."""
    svg = render({"t": [0.0, 5.0, 10.0, 15.0], "p99": [None, 0.005, None, None],
                  "rps": [0.0, 1690.0, 0.0, 0.0]}, SERVICE_PANELS)
    assert re.search(r'<circle [^>]*data-field="p99"', svg)
    assert not re.search(r'<circle [^>]*data-field="rps"', svg)  # a connected series stays a line


def test_count_axes_read_whole_numbers() -> None:
    svg = render({"t": [0.0, 1.0], "succeeded": [0, 2], "failed": [0, 0], "pending": [0, 0]}, PIPELINE_PANELS)
    tops = axis_tops(svg)
    assert tops["runs finished"] == "3"  # 2 with headroom, not 2.2
    assert tops["runs queued · running"] == "1"
    assert axis_tops(render({"t": [0.0], "inflight": [7]}, SERVICE_PANELS))["replicas · in flight"] == "8"


def legends(svg: str) -> dict[str, str]:
    return dict(re.findall(r'data-legend="([^"]+)">([^<]+)</text>', svg))


def test_legends_read_about_three_significant_digits() -> None:
    """The last sample of each line, as a person reads it: 1560 req/s, not 1559.99 (a rate over 5 s)."""
    svg = render({"t": [0.0, 5.0], "rps": [1200.0, 1559.99], "p50": [1.0, 1.0123], "p99": [10.0, 12.37]},
                 SERVICE_PANELS)
    shown = legends(svg)
    assert shown["rps"] == "req/s 1560"
    assert shown["p50"] == "p50 1.01"
    assert shown["p99"] == "p99 12.4"
