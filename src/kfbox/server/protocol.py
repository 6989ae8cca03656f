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

Example::

    uvicorn.Config(app, http=guarded_protocol(settings))
"""

from __future__ import annotations

import asyncio
from typing import Any

from kfbox.config import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools comes with uvicorn[standard]; without it uvicorn's own defaults apply
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def _reply(status: str, message: str) -> bytes:
    body = message.encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


def guarded_protocol(settings: Settings) -> Any:
    """A protocol class for ``uvicorn.Config(http=...)``, with its own per-address counts."""
    header_timeout = settings.http_header_timeout
    body_timeout = settings.http_body_timeout
    per_client = settings.max_connections_per_client
    if HttpToolsProtocol is None or not (header_timeout > 0 or body_timeout > 0 or per_client > 0):
        return "auto"  # all three off (0): uvicorn's own protocol, e.g. for the A/B benchmark
    too_many = _reply("503 Service Unavailable", f"Too many connections from your address (limit {per_client}, "
                      "KFBOX_MAX_CONNECTIONS_PER_CLIENT). Reuse connections or close idle ones.")
    too_slow = _reply("408 Request Timeout", f"The request headers did not arrive within {header_timeout:g}s.")
    open_by_client: dict[str, int] = {}

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _read_timer: asyncio.TimerHandle | None = None
        _address = ""
        _counted = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._address = self.client[0] if self.client else ""
            count = open_by_client[self._address] = open_by_client.get(self._address, 0) + 1
            self._counted = True
            if per_client and count > per_client:
                transport.write(too_many)
                transport.close()
                return
            self._arm(header_timeout, self._headers_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self._release()
            super().connection_lost(exc)

        def handle_websocket_upgrade(self) -> None:
            # the connection passes to the WebSocket protocol: no read deadline, out of the count
            self._release()
            super().handle_websocket_upgrade()

        def _release(self) -> None:
            self._disarm()
            if self._counted:
                self._counted = False
                left = open_by_client.get(self._address, 1) - 1
                if left > 0:
                    open_by_client[self._address] = left
                else:
                    open_by_client.pop(self._address, None)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(header_timeout, self._headers_timed_out)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(body_timeout, self._body_timed_out)

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._arm(body_timeout, self._body_timed_out)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()

        def _arm(self, seconds: float, handler: Any) -> None:
            self._disarm()
            if seconds > 0:
                self._read_timer = self.loop.call_later(seconds, handler)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _headers_timed_out(self) -> None:
            self._read_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # never in the middle of a response
                self.transport.write(too_slow)
            self.transport.close()

        def _body_timed_out(self) -> None:
            self._read_timer = None
            if self.flow.read_paused:  # the app is behind, not the client: wait for it
                self._arm(body_timeout, self._body_timed_out)
            elif not self.transport.is_closing():
                self.transport.close()

    return GuardedHttpToolsProtocol
