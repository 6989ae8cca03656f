"""The load generator behind ``kfbox loadtest``: a built-in ``hey``.

``-c`` workers share one event loop; each owns one keep-alive connection and sends the
same pre-encoded request again as soon as the previous reply is complete (a closed
loop, as ``hey`` and ``wrk`` do). The run is always bounded, by a request count, a
duration, or both (whichever comes first), and a stop request (Ctrl-C) ends it early
with a partial report.

Example::

    spec = LoadSpec(url="http://127.0.0.1:8080/healthz", concurrency=8, requests=1000)
    report = run_load(spec)
    print(report.rps, report.percentile(99))
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import signal
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from kfbox.errors import InvalidInput
from kfbox.loadtest.connection import Connection, HttpTarget, ProtocolError, RequestTimeout, open_connection
from kfbox.loadtest.latency import Latencies
from kfbox.loadtest.report import SECOND_PERCENTILES, Report, Sample, Second

DEFAULT_REQUESTS = 200
DEFAULT_CONCURRENCY = 50
DEFAULT_TIMEOUT = 20.0
PROGRESS_INTERVAL = 0.25
SAMPLE_INTERVAL = 1.0

Sampler = Callable[[], Awaitable[tuple[float, float | None] | None]]
"""Reads (ready, desired) replicas of the InferenceService under load, once per second."""


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    """What to send, how many at once, and when to stop."""

    url: str
    method: str = "GET"
    body: bytes | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    concurrency: int = DEFAULT_CONCURRENCY
    requests: int | None = None
    duration: float | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise InvalidInput(f"Concurrency -c {self.concurrency} must be at least 1.")
        if self.requests is not None and self.requests < 1:
            raise InvalidInput(f"Request count -n {self.requests} must be at least 1.")
        if self.duration is not None and self.duration <= 0:
            raise InvalidInput(f"Duration -z {self.duration}s must be positive, e.g. -z 30s.")
        if self.timeout <= 0:
            raise InvalidInput(f"Timeout {self.timeout}s must be positive.")

    @property
    def request_limit(self) -> int | None:
        """Requests to send: -n, else the default count when no duration bounds the run either."""
        if self.requests is None and self.duration is None:
            return DEFAULT_REQUESTS
        return self.requests

    @property
    def connections(self) -> int:
        limit = self.request_limit
        return min(self.concurrency, limit) if limit is not None else self.concurrency


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A snapshot for the live display."""

    elapsed: float
    done: int
    errors: int
    rps: float
    limit: int | None
    duration: float | None


class LoadTest:
    """One run: workers, a deadline, an optional sampler; :meth:`stop` ends it early."""

    def __init__(self, spec: LoadSpec, *, sampler: Sampler | None = None,
                 on_progress: Callable[[Snapshot], None] | None = None) -> None:
        self.spec = spec
        self.target = HttpTarget.parse(spec.url, spec.method, spec.body, spec.headers)
        self.sampler = sampler
        self.on_progress = on_progress
        self._issued = 0
        self._limit = spec.request_limit
        self._started = 0.0
        self._started_at = 0.0
        self._latencies = Latencies()  # the whole run, folded in second by second
        self._second = _SecondFold()
        self._timeline: list[Second] = []
        self._replies = 0
        self._inflight = 0
        self._statuses: Counter[int] = Counter()
        self._errors: Counter[str] = Counter()
        self._samples: list[Sample] = []
        self._stop: asyncio.Event | None = None
        self._closing = False
        self._last_end = 0.0

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> Report:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGINT, self.stop)
        self._started = time.perf_counter()
        self._started_at = time.time()
        workers = [asyncio.create_task(self._worker()) for _ in range(self.spec.connections)]
        helpers = [asyncio.create_task(self._report_progress())]
        if self.sampler is not None:
            helpers.append(asyncio.create_task(self._sample()))
        all_done: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*workers))
        stopped: asyncio.Future[Any] = asyncio.create_task(self._stop.wait())
        try:
            await self._wait([all_done, stopped])
        finally:
            elapsed = time.perf_counter() - self._started
            interrupted = self._stop.is_set()
            finished = all_done.done()
            self._closing = True  # a worker whose cancel gets lost (wait_for can swallow it) still ends
            all_done.cancel()
            for task in [*workers, *helpers, stopped]:
                task.cancel()
            # all_done is awaited too, so its (cancelled) outcome counts as retrieved
            outcomes = await asyncio.gather(all_done, *workers, *helpers, stopped, return_exceptions=True)
            close = getattr(self.sampler, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGINT)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome  # a bug in a worker must not pass as a short, clean run
        if finished and self._last_end:
            elapsed = self._last_end  # -n: the run ends with its last reply
        self._fold()
        return Report.build(
            url=self.spec.url, method=self.spec.method, concurrency=self.spec.connections, duration=elapsed,
            latencies=self._latencies, statuses=dict(self._statuses), errors=dict(self._errors),
            timeline=self._timeline, replicas=self._samples, interrupted=interrupted,
            started_at=self._started_at)

    def _at(self, elapsed: float) -> _SecondFold:
        """The fold of the second ``elapsed`` falls in; an earlier one is closed into the timeline first."""
        second = int(elapsed)
        if second != self._second.start:
            self._fold()
            self._second.start = second
        return self._second

    def _fold(self) -> None:
        fold = self._second
        if fold.latencies.count or fold.errors:
            self._timeline.append(fold.close(self._inflight))
            self._latencies.add(fold.latencies)
        fold.clear()

    async def _wait(self, ends: list[asyncio.Future[Any]]) -> None:
        """Until one of ``ends`` is done or the duration is up (the loop's timers may fire a little early)."""
        if self.spec.duration is None:
            await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
            return
        deadline = self._started + self.spec.duration
        while not any(end.done() for end in ends) and (left := deadline - time.perf_counter()) > 0:
            await asyncio.wait(ends, timeout=left + 0.001, return_when=asyncio.FIRST_COMPLETED)

    def _claim(self) -> bool:
        if self._closing:
            return False
        if self._limit is not None and self._issued >= self._limit:
            return False
        self._issued += 1
        return True

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        perf = time.perf_counter
        timeout = self.spec.timeout
        payload = self.target.payload
        conn: Connection | None = None
        try:
            while self._claim():
                start = perf()
                timer: asyncio.TimerHandle | None = None
                try:
                    if conn is None or conn.closed:
                        conn = await open_connection(self.target, timeout)
                    reply = conn.send(payload)
                    timer = loop.call_later(timeout - (perf() - start), conn.expire)
                    self._inflight += 1
                    try:
                        status = await reply
                    finally:
                        self._inflight -= 1
                except (OSError, EOFError, TimeoutError, RequestTimeout, ProtocolError, ssl.SSLError) as exc:
                    self._errors[error_kind(exc)] += 1
                    self._last_end = perf() - self._started
                    self._at(self._last_end).errors += 1
                    if conn is not None:
                        conn.close()
                        conn = None
                    # a failure may come without the coroutine ever suspending (a refused connect on
                    # loopback): yield, or the deadline timer would never get to run
                    await asyncio.sleep(0)
                    continue
                finally:
                    if timer is not None:
                        timer.cancel()
                end = perf()
                self._statuses[status] += 1
                self._replies += 1
                self._last_end = end - self._started
                fold = self._at(self._last_end)
                fold.latencies.record(end - start)
                if status >= 500:
                    fold.server_errors += 1
                if not conn.keep_alive:
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    async def _report_progress(self) -> None:
        if self.on_progress is None:
            return
        last_done, last_time = 0, 0.0
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            now = time.perf_counter() - self._started
            done = self._replies + self._errors.total()
            rps = (done - last_done) / (now - last_time) if now > last_time else 0.0
            last_done, last_time = done, now
            self.on_progress(Snapshot(elapsed=now, done=done, errors=self._errors.total(), rps=rps,
                                      limit=self._limit, duration=self.spec.duration))

    async def _sample(self) -> None:
        assert self.sampler is not None
        while True:
            elapsed = time.perf_counter() - self._started
            try:
                value = await self.sampler()
            except Exception:  # noqa: BLE001 - a failed sample is a gap in the chart, never a failed run
                value = None
            if value is not None:
                self._samples.append(Sample(t=elapsed, ready=value[0], desired=value[1]))
            await asyncio.sleep(max(0.0, SAMPLE_INTERVAL - (time.perf_counter() - self._started - elapsed)))


class _SecondFold:
    """The second being filled: its own small histogram and counts, closed into a :class:`Second`."""

    def __init__(self) -> None:
        self.start = 0
        self.latencies = Latencies()
        self.errors = 0
        self.server_errors = 0

    def close(self, inflight: int) -> Second:
        p = self.latencies.percentiles(SECOND_PERCENTILES)
        return Second(start=float(self.start), count=self.latencies.count, p50=p[50.0], p95=p[95.0], p99=p[99.0],
                      errors=self.errors, server_errors=self.server_errors, inflight=inflight)

    def clear(self) -> None:
        self.latencies.reset()
        self.errors = self.server_errors = 0


def error_kind(exc: BaseException) -> str:
    """A short, stable name for why a request got no reply, for the error counts."""
    if isinstance(exc, TimeoutError | RequestTimeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | EOFError):
        return "connection reset"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ssl.SSLError):
        return "tls error"
    if isinstance(exc, ProtocolError):
        return "bad reply"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno)).lower()
    return type(exc).__name__


def run_load(spec: LoadSpec, *, sampler: Sampler | None = None,
             on_progress: Callable[[Snapshot], None] | None = None) -> Report:
    """Run a load test to its end on a fresh event loop (uvloop when installed) and report."""
    test = LoadTest(spec, sampler=sampler, on_progress=on_progress)
    return _event_loop_run(test.run())


def _event_loop_run(coro: Awaitable[Report]) -> Report:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]
