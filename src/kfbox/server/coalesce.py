"""A reply's head and the body sent right after it leave in one write: one syscall, one wake-up of the reader.

uvicorn writes a reply's status line and headers when the app sends ``http.response.start``, and
its body when the app sends ``http.response.body``: two writes for every small reply. On loopback
each is a segment of its own, so the reader (the gateway, reading a replica's reply) wakes twice
and reads twice. Those wake-ups, not the Python between them, are what a hop costs most on a
shared machine: the gateway runs the same ~370k instructions per request in front of a replica
that answers at once and in front of a kserve replica, but each instruction costs two to three
times as much after a sleep (``benchmarks/gateway.py``'s docstring has the figures).

:class:`OneWrite` runs an ASGI app in uvicorn's request cycle and stands in for the cycle's
transport between the two sends, so uvicorn's own ``send`` still validates and encodes every
byte: the bytes on the wire are the same, only the number of writes changes. A head the app sends
and then waits on (a stream's first token) leaves on the next turn of the loop, on its own.
The server's short lane (:mod:`kfbox.server.protocol`) answers gateway requests so, and every
model replica kfbox starts answers all of its requests so (:func:`coalescing_protocol`).

Example::

    uvicorn.Config(app, http=coalescing_protocol())
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools comes with uvicorn[standard]; without it uvicorn's own defaults apply
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


class OneWrite:
    """Runs an app in uvicorn's request cycle; the reply's head and the body sent right after it are one write."""

    __slots__ = ("chain", "cycle", "parts", "transport")

    def __init__(self, chain: ASGIApp, cycle: Any) -> None:
        self.chain = chain
        self.cycle = cycle
        self.transport: asyncio.Transport = cycle.transport
        self.parts: list[bytes] = []

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.chain(scope, receive, self.send)

    async def send(self, message: Message) -> None:
        cycle = self.cycle
        if message["type"] == "http.response.start" and not cycle.response_started:
            cycle.transport = self
            try:
                await cycle.send(message)
            except BaseException:
                self.parts.clear()
                cycle.transport = self.transport
                raise
            asyncio.get_running_loop().call_soon(self.flush)
            return
        try:
            await cycle.send(message)
        finally:
            self.flush()

    def flush(self) -> None:
        self.cycle.transport = self.transport
        if self.parts:
            data = b"".join(self.parts)
            self.parts.clear()
            if not self.transport.is_closing():  # the client left in between: uvicorn writes nothing either
                self.transport.write(data)

    # what RequestResponseCycle uses of its transport
    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def close(self) -> None:
        self.flush()
        self.transport.close()


def coalescing_protocol() -> Any:
    """uvicorn's httptools protocol answering every request through :class:`OneWrite` (``"auto"`` without httptools)."""
    if HttpToolsProtocol is None:
        return "auto"

    class CoalescingHttpToolsProtocol(HttpToolsProtocol):
        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            run: Any = OneWrite(app, cycle).run  # an ASGI app; uvicorn's own types are narrower than starlette's
            super()._start_asgi_task(cycle, run)

    return CoalescingHttpToolsProtocol
