"""uvicorn's httptools protocol with the read deadlines and per-client cap it lacks (slowloris).

uvicorn times out only an idle keep-alive connection (``timeout_keep_alive``, between
requests); a client that opens a connection, or starts a request, and then sends nothing holds
it forever. Here, per connection:

* headers must be complete ``http_header_timeout`` seconds after the connection opens or the
  request's first byte arrives, else 408 and close;
* a body may not stall longer than ``http_body_timeout`` between chunks (unless the server
  itself paused reading because the app is behind), else close;
* one client address may hold ``max_connections_per_client`` connections; the next gets 503
  and is closed. A cap per address, not a global one, so a flood from one host cannot starve
  the others, and the load test's 500 keep-alive connections stay under it.

A deadline is a timestamp the parser callbacks set; one sweep a second (a quarter of the
shortest timeout, if less) closes the connections past theirs. A timer per request cost the
gateway 10 us of CPU per request; the timestamps cost about 2.

A request a :class:`~kfbox.server.shortcut.ShortLane` claims (the gateway's) runs its short
middleware chain instead of the whole app, in uvicorn's own request cycle (keep-alive, pipelining,
HEAD, chunked replies, flow control and the 500 on a crash are uvicorn's), and its reply's head
and the body sent right after it leave in one write (:class:`~kfbox.server.coalesce.OneWrite`):
uvicorn writes them separately, two syscalls and, for the client, two wake-ups on every small reply.

A feature may take a new connection before anything reads it (:class:`Door`): the connection hand-off of
``--data-plane handoff`` (:mod:`kfbox.serving.handoff_server`) passes it to a model replica, and may later give it
back with bytes read elsewhere, which this protocol then serves as any other connection.

Example::

    uvicorn.Config(app, http=guarded_protocol(settings, app.state.short_lane, platform.door))
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import socket
from collections.abc import Callable
from typing import Any

from kfbox.config import Settings
from kfbox.server.coalesce import OneWrite
from kfbox.server.shortcut import ShortLane

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools comes with uvicorn[standard]; without it uvicorn's own defaults apply
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

SWEEP_SECONDS = 1.0
"""How often overdue connections are looked for: a deadline is kept to within this."""


@dataclasses.dataclass
class Door:
    """Where a feature may take a new connection before the server reads it, and give one back."""

    offer: Callable[[asyncio.Transport, bytes], bool] | None = None
    """Called with a new connection's first bytes, once; True: the feature took the connection (and aborted this
    transport, which closes only this process's descriptor)."""
    adopt: Callable[[socket.socket, bytes], None] | None = None
    """Set by the server's protocol: serve this connection, whose first ``bytes`` were read elsewhere, as a new
    one (its next bytes offered at the door)."""


def _reply(status: str, message: str) -> bytes:
    body = message.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def too_many_connections(limit: int) -> bytes:
    """The reply, then the close, to a connection past the cap per client address (also a model replica's, for
    the connections handed to it: :mod:`kfbox.serving.handoff_replica`)."""
    return _reply("503 Service Unavailable", f"Too many connections from your address (limit {limit}, "
                  "KFBOX_MAX_CONNECTIONS_PER_CLIENT). Reuse connections or close idle ones.")


def headers_too_slow(timeout: float) -> bytes:
    """The reply, then the close, to a request whose headers did not arrive within ``timeout`` seconds."""
    return _reply("408 Request Timeout", f"The request headers did not arrive within {timeout:g}s.")


def guarded_protocol(settings: Settings, lane: ShortLane | None = None, door: Door | None = None) -> Any:
    """A protocol class for ``uvicorn.Config(http=...)``, with its own per-address counts.

    Deadlines are timestamps a request's parser callbacks set (one float store each, no timer
    per request: the gateway's hot path); one sweep per ``SWEEP_SECONDS`` closes the overdue.
    """
    header_timeout = settings.http_header_timeout
    body_timeout = settings.http_body_timeout
    per_client = settings.max_connections_per_client
    if HttpToolsProtocol is None or not (header_timeout > 0 or body_timeout > 0 or per_client > 0):
        return "auto"  # all three off (0): uvicorn's own protocol, e.g. for the A/B benchmark
    header_timeout = header_timeout if header_timeout > 0 else math.inf
    body_timeout = body_timeout if body_timeout > 0 else math.inf
    sweep_seconds = min(SWEEP_SECONDS, header_timeout / 4, body_timeout / 4)
    too_many = too_many_connections(per_client)
    too_slow = headers_too_slow(header_timeout)
    open_by_client: dict[str, int] = {}
    watched: set[GuardedHttpToolsProtocol] = set()
    sweeping: list[asyncio.TimerHandle] = []

    def sweep(loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for protocol in [p for p in watched if p.deadline < now]:
            protocol.overdue(now)
        sweeping.clear()
        if watched:
            sweeping.append(loop.call_later(sweep_seconds, sweep, loop))

    made: dict[str, Any] = {}
    """What uvicorn builds this protocol with (config and state), for connections given back (``door.adopt``)."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        deadline = math.inf
        reading_body = False
        _address = ""
        fresh = True
        """No byte of the connection read yet: it may be offered at the door."""
        pending = b""
        """Bytes read elsewhere, served before any the connection brings."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if not made:
                made.update(config=self.config, server_state=self.server_state, app_state=self.app_state)
            self._address = self.client[0] if self.client else ""
            count = open_by_client[self._address] = open_by_client.get(self._address, 0) + 1
            watched.add(self)
            if not sweeping:
                sweeping.append(self.loop.call_later(sweep_seconds, sweep, self.loop))
            if per_client and count > per_client:
                transport.write(too_many)
                transport.close()
                return
            self.deadline = self.loop.time() + header_timeout
            if self.pending and not transport.is_closing():  # before the transport's first read: these come first
                data, self.pending = self.pending, b""
                self.data_received(data)

        def data_received(self, data: bytes) -> None:
            if self.fresh:
                self.fresh = False
                if door is not None and door.offer is not None and door.offer(self.transport, data):
                    self._release()
                    return
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            self._release()
            super().connection_lost(exc)

        def handle_websocket_upgrade(self) -> None:
            # the connection passes to the WebSocket protocol: no read deadline, out of the count
            self._release()
            super().handle_websocket_upgrade()

        def _release(self) -> None:
            if self in watched:
                watched.discard(self)
                left = open_by_client.get(self._address, 1) - 1
                if left > 0:
                    open_by_client[self._address] = left
                else:
                    open_by_client.pop(self._address, None)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.deadline = self.loop.time() + header_timeout
            self.reading_body = False

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self.deadline = self.loop.time() + body_timeout
            self.reading_body = True

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self.deadline = self.loop.time() + body_timeout

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.deadline = math.inf

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            if lane is not None and app is self.app:  # not uvicorn's 503 for limit_concurrency
                chain = lane.claim(cycle.scope)
                if chain is not None:
                    app = OneWrite(chain, cycle).run
            super()._start_asgi_task(cycle, app)

        def overdue(self, now: float) -> None:
            if self.transport.is_closing():
                return
            if self.reading_body:
                if self.flow.read_paused:  # the app is behind, not the client: wait for it
                    self.deadline = now + body_timeout
                    return
            elif self.cycle is None or self.cycle.response_complete:  # never in the middle of a response
                self.transport.write(too_slow)
            self.deadline = math.inf
            self.transport.close()

    if door is not None:
        def adopt(sock: socket.socket, data: bytes) -> None:
            if not made:  # no connection served yet: none can have been handed off either
                sock.close()
                return

            def protocol() -> GuardedHttpToolsProtocol:
                adopted = GuardedHttpToolsProtocol(**made)
                adopted.pending = data  # offered again: a request for another model goes to that model's replica
                return adopted

            loop = asyncio.get_running_loop()
            task = loop.create_task(loop.connect_accepted_socket(protocol, sock))

            def taken(task: asyncio.Task[Any]) -> None:
                if task.cancelled() or task.exception() is not None:  # not served: closed, not leaked
                    sock.close()

            task.add_done_callback(taken)

        door.adopt = adopt
    return GuardedHttpToolsProtocol
