"""``kfbox loadtest --plot``'s series: the run's last, partial second drawn at its own rate."""

from __future__ import annotations

import math

from kfbox.loadtest.latency import Latencies
from kfbox.loadtest.plot import report_series
from kfbox.loadtest.report import Report, Second


def report(duration: float, counts: list[int]) -> Report:
    timeline = [Second(start=float(i), count=n, p50=0.001, p99=0.002) for i, n in enumerate(counts)]
    return Report.build(url="http://127.0.0.1/x", method="GET", concurrency=4, duration=duration,
                        latencies=Latencies(), statuses={200: sum(counts)}, errors={}, timeline=timeline,
                        replicas=[], interrupted=False)


def test_the_requests_in_flight_at_a_deadline_are_no_second_of_their_own() -> None:
    """-z 3s: the 4 requests in flight at 3.0 s complete just after it; drawn as a second, the chart ended on a
    fall from ~2,300 req/s to 4."""
    series = report_series(report(3.0007, [2251, 2201, 2355, 4]))
    assert series["rps"] == [2251, 2201, 2355]


def test_a_last_second_cut_short_is_drawn_at_its_own_rate() -> None:
    """-n 5000 ending at 2.78 s: its last 0.78 s held 1,295 replies, 1,660 a second, not 1,295."""
    series = report_series(report(2.78, [1572, 2133, 1295]))
    assert series["rps"][:2] == [1572, 2133] and math.isclose(series["rps"][2], 1295 / 0.78, rel_tol=0.01)
