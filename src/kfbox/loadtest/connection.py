"""A lean HTTP/1.1 keep-alive client connection for the load generator.

Why not httpx: on two shared cores a general-purpose client spends more CPU per
request than the model server it is measuring, and the figures stop agreeing with
``wrk``. Here the request is encoded once, each connection is an
:class:`asyncio.Protocol` whose replies are parsed by ``httptools`` (llhttp, the parser
uvicorn uses: lengths, chunked bodies, keep-alive) and one future per request hands the
status back to the worker.

Example::

    target = HttpTarget.parse("http://127.0.0.1:8080/healthz")
    conn = await open_connection(target, timeout=5)
    status = await conn.send(target.payload)
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from urllib.parse import urlsplit

import httptools

from kfbox.addresses import bracket
from kfbox.errors import InvalidInput

USER_AGENT = "kfbox-loadtest"


@dataclasses.dataclass(frozen=True)
class HttpTarget:
    """Where to connect and the exact bytes of the one request sent over and over."""

    url: str
    host: str
    port: int
    tls: bool
    method: str
    payload: bytes

    @classmethod
    def parse(cls, url: str, method: str = "GET", body: bytes | None = None,
              headers: dict[str, str] | None = None) -> HttpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(f"Target URL {url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8080/healthz.")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise InvalidInput(f"Target URL {url!r} has an invalid port: {exc}.") from exc
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
        host_header = bracket(parts.hostname) + ("" if default_port else f":{port}")
        given = {name.lower() for name in (headers or {})}
        defaults = {"Host": host_header, "User-Agent": USER_AGENT, "Accept": "*/*"}
        if body is not None:
            defaults["Content-Type"] = "application/json"
        # a header given by the caller replaces the default (e.g. Host, for KServe's host routing)
        lines = [f"{method} {path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in defaults.items() if name.lower() not in given]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items() if name.lower() != "content-length"]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        return cls(url=url, host=parts.hostname, port=port, tls=parts.scheme == "https", method=method,
                   payload=payload)


class RequestTimeout(Exception):
    """No complete reply within the request timeout."""


class Connection(asyncio.Protocol):
    """One keep-alive connection; :meth:`send` writes a request and resolves to its status code."""

    def __init__(self, method: str) -> None:
        self._head_only = method == "HEAD"
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.keep_alive = True
        self._waiter: asyncio.Future[int] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._status = 0
        self._headers_done = False
        self._framed = False  # a Content-Length or chunked body: a close before its end is an error

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"unparseable HTTP reply: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done and not self._framed and self._waiter is not None and not self._waiter.done():
            self.keep_alive = False  # a body that runs until the close: complete now
            self._finish()
            return
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = self._status >= 200
        if self._status in (204, 304):
            self._framed = True
        if self._head_only and self._headers_done:
            # a HEAD reply has a Content-Length but no body; llhttp cannot be told, so finish
            # here and start a fresh parser for the next reply
            self.keep_alive = self._parser.should_keep_alive()
            self._parser = httptools.HttpResponseParser(self)
            self._finish()

    def on_message_complete(self) -> None:
        if self._status < 200:  # 100 Continue and friends: the real reply follows
            self._reset()
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._finish()

    # use
    def send(self, payload: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self._waiter = self._loop.create_future()
        self.transport.write(payload)
        return self._waiter

    def expire(self) -> None:
        """Called by the request timer: give up on this reply and this connection."""
        self._fail(RequestTimeout())
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _reset(self) -> None:
        self._status = 0
        self._headers_done = False
        self._framed = False

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.keep_alive = False

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        status = self._status
        self._reset()
        if waiter is not None and not waiter.done():
            waiter.set_result(status)


class ProtocolError(Exception):
    """The reply was not HTTP/1.x as we know it."""


async def open_connection(target: HttpTarget, timeout: float) -> Connection:
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context() if target.tls else None
    async with asyncio.timeout(timeout):
        _, conn = await loop.create_connection(lambda: Connection(target.method), target.host, target.port,
                                               ssl=context, server_hostname=target.host if context else None)
    return conn
