"""The load test's latency histogram: buckets that keep the shape of the bulk when a few replies were slow."""

from __future__ import annotations

from kfbox.loadtest.latency import Latencies


def test_a_slow_outlier_does_not_swallow_the_bulk_into_one_bucket() -> None:
    """Equal widths from 1 ms to 100 ms put 1 ms and 2 ms replies in the same first bucket (as hey's does)."""
    latencies = Latencies()
    for seconds, times in ((0.001, 1000), (0.002, 10), (0.1, 1)):
        for _ in range(times):
            latencies.record(seconds)
    buckets = latencies.buckets(10)
    assert sum(count for _, count in buckets) == 1011
    assert [count for _, count in buckets if count] == [1000, 10, 1]  # three groups, three buckets
    bounds = [bound for bound, _ in buckets]
    assert bounds == sorted(bounds) and abs(bounds[-1] - 0.1) < 0.0002


def test_one_latency_is_one_bucket_of_it() -> None:
    latencies = Latencies()
    latencies.record(0.005)
    assert [count for _, count in latencies.buckets(10)] == [0] * 9 + [1]
    assert Latencies().buckets(10) == []
