"""The gateway's HTTP/1.1 client to its replicas: keep-alive connections on raw asyncio, parsed by httptools.

A proxied request is one ``transport.write``; a small reply (one that announces a
``content-length`` up to :data:`WHOLE_LIMIT`) is handed over once it has all arrived, status,
headers and body together, however the replica split its writes: no client library's
request/response objects, no header re-encoding, no body decoding. (Through aiohttp the hop cost about 0.3 ms of CPU
per request, through FastAPI's routing about 1 ms more; see benchmarks/gateway.py.)

A connection carries one exchange at a time. Any other reply's body is handed over as it
arrives, so a chunked or server-sent-event stream reaches the client token by token; reading pauses
while more than :data:`HIGH_WATER` bytes wait for a slow client.

Example::

    upstreams = Upstreams()
    connection = await upstreams.open(port)
    await connection.exchange(b"GET /v2/health/ready HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n", b"", 0.5)
    connection.status  # 200
    body = await connection.read_all(0.5)
    upstreams.release(port, connection)
"""

from __future__ import annotations

import asyncio
import collections
import time

import httptools

HOST = "127.0.0.1"
HIGH_WATER = 256 * 1024
WHOLE_LIMIT = 64 * 1024
"""A reply announcing at most this many bytes is waited for whole. uvicorn (kserve's server) writes a
reply's head and body in two calls: handing the head over alone cost the gateway a second wake-up
and the streaming relay (a task watching the client, three sends) on most small replies."""
IDLE_SECONDS = 4.0
"""An idle connection older than this is closed, not reused: kserve's uvicorn closes its own after 5 s,
and a request written just as the replica closes the connection would be lost."""
MAX_IDLE = 64
"""Idle connections kept per replica; more are closed when released."""
CONNECT_TIMEOUT = 2.0


class UpstreamError(Exception):
    """The replica could not be reached, or the connection broke before the reply was complete."""

    def __init__(self, message: str, *, connected: bool, reused: bool = False, received: bool = False) -> None:
        super().__init__(message)
        self.connected = connected
        """False: the request never left (connection refused): safe to send anywhere."""
        self.reused = reused
        self.received = received
        """True once any byte of the reply arrived."""


class Connection(asyncio.Protocol):
    """One keep-alive connection: write a request, then read the reply's head and body as they come."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.uses = 0
        self.idle_since = 0.0
        self._reset(head_only=False)

    def _reset(self, head_only: bool) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.ready = False
        """The head is in and, for a small reply with a length, the whole body too (:data:`WHOLE_LIMIT`)."""
        self.length = -1
        self.complete = False
        self.keep_alive = False
        self.head_only = head_only
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.received = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"the replica's reply is not valid HTTP: {exc}", connected=True,
                                     reused=self.uses > 1, received=True))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(UpstreamError(f"the replica closed the connection ({exc or 'end of stream'})",
                                     connected=True, reused=self.uses > 1, received=self.received))

    # --- httptools callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" and value.isdigit():
            self.length = int(value)
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:  # an interim reply (100 Continue): the real one follows
            self.headers = []
            self.length = -1
            return
        self.head_done = True
        if self.head_only:  # a reply to HEAD announces a length it does not send
            self.complete = True
        elif 0 <= self.length <= WHOLE_LIMIT:
            return  # the body follows at once: woken when it is all in
        self.ready = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
        if self.ready:  # else exchange() is still waiting for the whole of a small reply
            self._wake()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            return
        self.complete = True
        self.ready = True
        self.keep_alive = self.parser.should_keep_alive() and not self.head_only
        self._wake()

    # --- the exchange ------------------------------------------------------------------------
    async def exchange(self, head: bytes, body: bytes, timeout: float, head_only: bool = False) -> None:
        """Send one request; return once the reply's status and headers are in (:attr:`status`, :attr:`headers`),
        with its body if it is small (:data:`WHOLE_LIMIT`)."""
        if self.closed or self.transport is None:
            raise UpstreamError("the connection is closed", connected=True, reused=self.uses > 0)
        self._reset(head_only)
        self.uses += 1
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        while not self.ready:
            await self._wait(timeout)

    async def next_chunk(self, timeout: float) -> bytes | None:
        """The next piece of the body as it arrived; None at its end."""
        while not self.chunks:
            if self.complete:
                return None
            await self._wait(timeout)
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.buffered <= HIGH_WATER // 4 and self.transport is not None and not self.closed:
            self.transport.resume_reading()
        return chunk

    async def read_all(self, timeout: float, limit: int = 16 * 1024 * 1024) -> bytes:
        """The whole body (an error reply, a probe): at most ``limit`` bytes are kept."""
        parts = []
        size = 0
        while (chunk := await self.next_chunk(timeout)) is not None:
            if size < limit:
                parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)

    def take_body(self) -> bytes | None:
        """The whole body if it has all arrived (the usual small reply), else None."""
        if not self.complete:
            return None
        body = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        return body

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self.chunks

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def _wait(self, timeout: float) -> None:
        if self.error is not None:
            raise self.error
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, self._timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def _timed_out(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())
        self.close()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self.error = error
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)


class Upstreams:
    """Idle keep-alive connections per replica port on 127.0.0.1."""

    def __init__(self) -> None:
        self.idle: dict[int, list[Connection]] = {}

    async def open(self, port: int) -> Connection:
        """An idle connection to ``port`` if a fresh one is there, else a new one (UpstreamError if refused)."""
        idle = self.idle.get(port)
        if idle:
            oldest = time.monotonic() - IDLE_SECONDS
            while idle:
                connection = idle.pop()
                if not connection.closed and connection.idle_since > oldest:
                    return connection
                connection.close()
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(loop.create_connection(Connection, HOST, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to the replica on port {port}: {exc!r}", connected=False) from exc
        return connection

    def release(self, port: int, connection: Connection) -> None:
        """Keep a connection whose exchange is over for the next request, or close it."""
        idle = self.idle.setdefault(port, [])
        if connection.reusable and len(idle) < MAX_IDLE:
            connection.idle_since = time.monotonic()
            idle.append(connection)
        else:
            connection.close()

    def forget(self, port: int) -> None:
        for connection in self.idle.pop(port, []):
            connection.close()

    def close(self) -> None:
        for port in list(self.idle):
            self.forget(port)
