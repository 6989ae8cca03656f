"""ASGI middleware: body-size limit, per-route Prometheus metrics; the error reply all middleware sends.

Auth is in :mod:`kfbox.server.auth`, Host/Origin/path checks in :mod:`kfbox.server.guard`.
"""

from __future__ import annotations

import json
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfbox.server.platform import Platform


async def send_error(platform: Platform, scope: Scope, send: Send, status: int, message: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(platform.render_error(scope.get("path", ""), status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


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
            await send_error(self.platform, scope, send, 413, self._message(limit))
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
                await send_error(self.platform, scope, send, 413, self._message(limit))

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
        self.series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        """Labelled children by (method, route, status), looked up once: ``labels()`` cost more than the updates
        (on every gateway request). Never removed, as the series themselves: one per route template."""

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
            key = (scope["method"], _route_template(scope), status)
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = (self.requests.labels(key[0], key[1], str(status)),
                                             self.latency.labels(key[0], key[1]))
            series[0].inc()
            series[1].observe(time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return str(path)
    # unmatched paths are not labels: unbounded cardinality
    return "unmatched"
