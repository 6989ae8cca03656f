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
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and length.isdigit():
            if int(length) > limit:
                await send_error(self.platform, scope, send, 413, self._message(limit))
            else:  # the parser reads exactly this many bytes: nothing to count (a gateway request's usual case)
                await self.app(scope, receive, send)
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


class HttpMetrics:
    """``kfbox_http_requests_total`` and ``kfbox_http_request_duration_seconds`` by route template: one set per
    server, shared by the full stack's :class:`RequestMetrics` and a short chain's (:mod:`kfbox.server.shortcut`)."""

    def __init__(self, platform: Platform) -> None:
        self.requests = Counter("kfbox_http_requests", "HTTP requests served, by route and status.",
                                ["method", "route", "status"], registry=platform.metrics)
        self.latency = Histogram("kfbox_http_request_duration_seconds", "HTTP request latency by route.",
                                 ["method", "route"], registry=platform.metrics)
        self.series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        """Labelled children by (method, route, status), looked up once: ``labels()`` cost more than the updates
        (on every gateway request). Never removed, as the series themselves: one per route template."""

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = (self.requests.labels(method, route, str(status)),
                                         self.latency.labels(method, route))
        series[0].inc()
        series[1].observe(seconds)


class RequestMetrics:
    """Counts every HTTP request in :class:`HttpMetrics`, by the route template the app set in the scope."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

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
            self.metrics.record(scope["method"], _route_template(scope), status, time.perf_counter() - start)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return str(path)
    # unmatched paths are not labels: unbounded cardinality
    return "unmatched"
