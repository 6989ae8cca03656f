"""How a pool picks a replica for a request (kfbox.serving.pool.ReplicaPool.pick), with replicas injected:
no process is started (``pick`` reads only the replicas' readiness and in-flight counts); and which replicas a
scale down stops (ReplicaPool.tick), with real processes that serve nothing standing in for the replicas."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kfbox.server.processes import ChildProcess
from kfbox.serving.pool import PoolConfig, Replica, ReplicaPool, free_port
from kfbox.serving.spec import PredictorSpec


@pytest.fixture()
def pool(tmp_path: Path) -> ReplicaPool:
    spec = PredictorSpec(model_format="sklearn", storage_uri=None, model_class=None, python_path=None,
                         min_replicas=1, max_replicas=3, scale_target=1, scale_metric="concurrency",
                         scale_window=None, enable_grpc=False)
    config = PoolConfig(model_name="m", revision="m-predictor-00001", log_dir=tmp_path, scale_window=60.0,
                        start_timeout=60.0)
    launcher: Any = None  # never asked to start anything: the replicas are injected
    pool = ReplicaPool(config, spec, Path, launcher)
    child: Any = None
    pool.replicas = [Replica(index=i, port=9000 + i, child=child, started_at=0.0, ready_at=0.0) for i in (1, 2, 3)]
    return pool


def serve_one_at_a_time(pool: ReplicaPool, requests: int) -> list[int]:
    """Each request finishes before the next is picked (c=1): the ports that served them."""
    served = []
    for _ in range(requests):
        replica = pool.pick()
        assert replica is not None
        served.append(replica.port)
    return served


def test_at_low_load_one_replica_serves_every_request(pool: ReplicaPool) -> None:
    assert len(set(serve_one_at_a_time(pool, 10))) == 1


def test_a_busy_replica_is_passed_over_for_an_idle_one_and_load_spreads(pool: ReplicaPool) -> None:
    first = pool.pick()
    assert first is not None
    first.inflight += 1
    second = pool.pick()
    assert second is not None and second is not first
    second.inflight += 1
    third = pool.pick()
    assert third is not None and third not in (first, second)
    third.inflight += 1
    assert {first.port, second.port, third.port} == {9001, 9002, 9003}
    fourth = pool.pick()  # all busy alike: the one picked last
    assert fourth is third


def test_when_load_falls_the_replica_used_last_is_kept(pool: ReplicaPool) -> None:
    a = pool.pick()
    assert a is not None
    a.inflight += 1
    b = pool.pick()
    assert b is not None and b is not a
    b.inflight += 1
    a.inflight -= 1  # a finishes first; b is still busy: a is now the idlest
    assert pool.pick() is a
    b.inflight -= 1  # both idle: a was picked last
    assert serve_one_at_a_time(pool, 3) == [a.port] * 3


def test_only_ready_replicas_are_picked(pool: ReplicaPool) -> None:
    starting, broken, ready = pool.replicas
    starting.ready_at = None
    broken.broken = True
    assert serve_one_at_a_time(pool, 3) == [ready.port] * 3
    ready.broken = True
    assert pool.pick() is None


def limited(tmp_path: Path, concurrency: int) -> ReplicaPool:
    """A pool of one ready replica with ``containerConcurrency``."""
    spec = PredictorSpec(model_format="sklearn", storage_uri=None, model_class=None, python_path=None,
                         min_replicas=1, max_replicas=1, scale_target=1, scale_metric="concurrency",
                         scale_window=None, enable_grpc=False, container_concurrency=concurrency)
    config = PoolConfig(model_name="m", revision="m-predictor-00001", log_dir=tmp_path, scale_window=60.0,
                        start_timeout=60.0)
    launcher: Any = None
    pool = ReplicaPool(config, spec, Path, launcher)
    child: Any = None
    pool.replicas = [Replica(index=1, port=9001, child=child, started_at=0.0, ready_at=0.0)]
    return pool


def test_a_replica_at_its_container_concurrency_is_not_picked_and_a_release_hands_its_slot_on(
        tmp_path: Path) -> None:
    """Knative's queue-proxy: at most containerConcurrency at once; a waiting request takes the slot a finished
    one released, and one that leaves while waiting passes its wake-up on."""
    async def scenario() -> list[str]:
        pool = limited(tmp_path, 1)
        first = pool.pick()
        assert first is not None
        first.inflight += 1
        assert pool.pick() is None  # at its limit
        assert await pool.wait_slot(0) is None  # no time left to wait: the caller answers 503
        seen: list[str] = []

        async def wait(label: str) -> None:
            replica = await pool.wait_slot(30)
            assert replica is first
            replica.inflight += 1
            seen.append(label)

        leaving = asyncio.ensure_future(pool.wait_slot(30))
        second = asyncio.ensure_future(wait("second"))
        await asyncio.sleep(0)
        assert pool.queued == 2
        pool.release(first)  # wakes the oldest waiter...
        leaving.cancel()  # ...which leaves before it runs: its wake-up goes to the next
        await asyncio.wait_for(second, 5)
        assert (pool.queued, first.inflight) == (0, 1)
        return seen

    assert asyncio.run(scenario()) == ["second"]


def test_no_container_concurrency_means_no_limit(tmp_path: Path) -> None:
    pool = limited(tmp_path, 0)
    for _ in range(200):
        replica = pool.pick()
        assert replica is not None
        replica.inflight += 1


def scaling_down(tmp_path: Path, ready_at: list[float | None], to: int) -> ReplicaPool:
    """A pool held at ``to`` replicas (minReplicas = maxReplicas) that has one replica per ``ready_at`` (None: still
    starting), in the order they were started. Each is a real process listening nowhere, so one still starting
    stays so, and stopping one ends its process."""
    spec = PredictorSpec(model_format="sklearn", storage_uri=None, model_class=None, python_path=None,
                         min_replicas=to, max_replicas=to, scale_target=1, scale_metric="concurrency",
                         scale_window=None, enable_grpc=False)
    config = PoolConfig(model_name="m", revision="m-predictor-00001", log_dir=tmp_path, scale_window=60.0,
                        start_timeout=60.0, drain_seconds=5.0)
    launcher: Any = None  # the pool is already larger than wanted: it starts nothing
    pool = ReplicaPool(config, spec, Path, launcher)
    now = time.monotonic()
    for index, ready in enumerate(ready_at, start=1):
        child = ChildProcess.spawn([sys.executable, "-c", "import time; time.sleep(60)"],
                                   log_path=tmp_path / f"{index}.log")
        pool.replicas.append(Replica(index=index, port=free_port(), child=child, started_at=now,
                                     ready_at=None if ready is None else now - 100 + ready))
    return pool


def scale_down(pool: ReplicaPool, busy: Replica | None = None) -> tuple[list[int], list[int]]:
    """One tick of ``pool``: the replicas it keeps and those whose process it stopped (by index). ``busy`` has a
    request in flight, which ends a moment after the tick took its replica out of the pool."""
    everyone = list(pool.replicas)

    async def scenario() -> tuple[list[int], list[int]]:
        await pool.tick(time.monotonic())
        kept = [replica.index for replica in pool.replicas]
        if busy is not None:
            await asyncio.sleep(0.3)
            assert busy.child.alive, "a stopped replica's request in flight finishes first"
            busy.inflight -= 1
        deadline = time.monotonic() + 10
        while any(r.child.alive for r in everyone if r.index not in kept) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stopped = [r.index for r in everyone if not r.child.alive]
        await pool.close()
        return kept, stopped

    try:
        return asyncio.run(scenario())
    finally:
        for replica in everyone:
            replica.child.stop(0.5)


def test_a_scale_down_stops_the_replica_ready_most_recently_as_a_replicaset_does(tmp_path: Path) -> None:
    """Kubernetes deletes the pod ready for the shortest time: the replicas that have served longest stay, even
    when the one stopped has a request in flight (it finishes first)."""
    pool = scaling_down(tmp_path, [10.0, 30.0, 20.0], to=2)
    newest_ready = pool.replicas[1]
    newest_ready.inflight = 1
    assert scale_down(pool, busy=newest_ready) == ([1, 3], [2])


def test_a_scale_down_stops_starting_replicas_first_then_the_newest_ready(tmp_path: Path) -> None:
    """Not ready before ready; among replicas ready at the same moment (one tick), the newest."""
    pool = scaling_down(tmp_path, [10.0, 20.0, None, 20.0, None], to=2)
    assert scale_down(pool) == ([1, 2], [3, 4, 5])
