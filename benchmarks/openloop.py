"""An open-loop (fixed-rate) HTTP load generator for the gateway benchmark.

wrk and ``kfbox loadtest`` are closed-loop: each connection waits for its reply before sending
the next request, so a slow server is sent less and its queueing never shows (coordinated
omission). Here request ``i`` is due at ``i / rate`` whatever happened before; its latency is
counted from that due time, so time spent waiting for a free connection counts too. Connections
are kept alive and opened on demand up to ``max_connections``.

    report = asyncio.run(fixed_rate(url, body, rate=500, seconds=5))
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from urllib.parse import urlsplit

import httptools


@dataclasses.dataclass
class RateReport:
    rate: float
    sent: int
    latencies: list[float]
    """Seconds from due time to reply, of the 200 replies."""
    statuses: Counter[int]
    timeouts: int
    errors: int
    """Connections refused, reset or closed before a reply."""
    other_latencies: list[float] = dataclasses.field(default_factory=list)
    """The same for every other reply (e.g. an overloaded server's 503s)."""
    unsent: int = 0
    """Requests the generator could not send: all ``max_connections`` were busy (the server is far behind)."""

    def percentile(self, pct: float, others: bool = False) -> float:
        ordered = sorted(self.other_latencies if others else self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future[int] | None = None
        self.broken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.connection_lost(None)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))


async def fixed_rate(url: str, body: bytes, rate: float, seconds: float, timeout: float = 5.0,
                     max_connections: int = 512) -> RateReport:
    """POST ``body`` to ``url`` ``rate`` times a second for ``seconds``; latencies from each due time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    idle: list[_Connection] = []
    opened = 0
    report = RateReport(rate, 0, [], Counter(), 0, 0)

    async def one(due: float) -> None:
        nonlocal opened
        connection = None
        try:
            while idle and connection is None:
                candidate = idle.pop()
                connection = None if candidate.broken else candidate
            if connection is None:
                if opened >= max_connections:
                    report.unsent += 1
                    return
                opened += 1
                _, connection = await loop.create_connection(_Connection, host, port)
            connection.done = loop.create_future()
            assert connection.transport is not None
            connection.transport.write(request)
            status = await asyncio.wait_for(connection.done, timeout)
            (report.latencies if status == 200 else report.other_latencies).append(loop.time() - due)
            report.statuses[status] += 1
            idle.append(connection)
        except TimeoutError:
            report.timeouts += 1
            opened -= 1
            if connection is not None and connection.transport is not None:
                connection.transport.close()
        except (OSError, ConnectionError):
            report.errors += 1
            opened -= 1

    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    total = int(rate * seconds)
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        report.sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    for connection in idle:
        if connection.transport is not None:
            connection.transport.close()
    return report

