"""ASGI middleware: bearer-token auth, body-size limit, per-route Prometheus metrics."""

from __future__ import annotations

import hmac
import json
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfbox.server.platform import Platform

OPEN_PATHS = ("/healthz", "/", "/static/")


async def _send_error(platform: Platform, scope: Scope, send: Send, status: int, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(platform.render_error(scope.get("path", ""), status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class TokenAuth:
    """When a token is configured every path but the open ones needs ``Authorization: Bearer``."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        self.expected = f"Bearer {platform.settings.token}".encode() if platform.settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] != "http" or _is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        await _send_error(self.platform, scope, send, 401, "Missing or wrong bearer token. "
                          "Send 'Authorization: Bearer <token>' (the token kfbox up was given).",
                          [(b"www-authenticate", b"Bearer")])


def _is_open(path: str) -> bool:
    return path in ("/", "/healthz") or path.startswith("/static/")


class BodyLimit:
    """Refuse bodies over the limit with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        self.limit = platform.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next((n for rule in self.platform.body_limits if (n := rule(scope)) is not None), self.limit)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _send_error(self.platform, scope, send, 413, self._message(limit))
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_error(self.platform, scope, send, 413, self._message(limit))

    def _message(self, limit: int) -> str:
        return f"Request body is larger than the limit of {limit} bytes."


class _TooLarge(Exception):
    pass


class RequestMetrics:
    """``kfbox_http_requests_total`` and ``kfbox_http_request_duration_seconds`` by route template."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.requests = Counter("kfbox_http_requests", "HTTP requests served, by route and status.",
                                ["method", "route", "status"], registry=platform.metrics)
        self.latency = Histogram("kfbox_http_request_duration_seconds", "HTTP request latency by route.",
                                 ["method", "route"], registry=platform.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = _route_template(scope)
            self.requests.labels(scope["method"], route, str(status)).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return str(path)
    # unmatched paths are not labels: unbounded cardinality
    return "unmatched"
