"""The inference gateway: ``/serving/{namespace}/{name}/...`` and ``Host: name.namespace.domain``.

It proxies V1/V2 requests to a ready replica of the revision the traffic split picks, counts
in-flight requests for the autoscaler, holds a request while a scaled-to-zero revision cold
starts, retries on another replica when one is dead (the request never reached it, or it is
idempotent: a GET, or an inference call, which has no side effects), and answers 503 at once
when no replica can serve.

Every error the gateway answers has KServe's body, ``{"error": "..."}``, with one
``content-type: application/json``: the replica's own errors pass through; FastAPI's
``{"detail": ...}`` forms a replica answers for 405 (with its ``allow`` header) and 422 are
reshaped to it, and so are the gateway's own 404/413/503/504 and the platform's 401.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from kfbox.serving.manager import ServingManager
from kfbox.serving.store import revision_name

PREFIX = "/serving"
MAX_ATTEMPTS = 3
FORWARD_REQUEST = ("content-type", "accept", "inference-header-content-length", "x-request-id", "traceparent")
FORWARD_RESPONSE = ("content-type", "inference-header-content-length", "x-request-id", "allow")
IDEMPOTENT = ("GET", "HEAD", "OPTIONS")


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class HostRouting:
    """``Host: {name}.{namespace}.{domain}`` becomes ``/serving/{namespace}/{name}/<path>``, as KServe's ingress."""

    def __init__(self, app: ASGIApp, domain: str) -> None:
        self.app = app
        self.suffix = "." + domain.lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower().rsplit(":", 1)[0]
            if host.endswith(self.suffix):
                labels = host[: -len(self.suffix)].split(".")
                if len(labels) == 2 and all(labels):
                    name, namespace = labels
                    path = f"{PREFIX}/{namespace}/{name.removesuffix('-predictor')}{scope['path']}"
                    scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


def gateway_router(manager: ServingManager) -> APIRouter:
    router = APIRouter(tags=["serving gateway"])
    methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]

    @router.api_route(PREFIX + "/{namespace}/{name}/{path:path}", methods=methods, include_in_schema=False)
    async def proxy(request: Request, namespace: str, name: str, path: str) -> Response:
        deployment = manager.deployments.get((namespace, name))
        labels = (namespace, name)
        if deployment is None:
            return error(404, f"InferenceService {namespace}/{name} does not exist. List them with: kfbox serve list")
        body = await request.body()
        started = time.perf_counter()
        manager.metrics.inflight.labels(*labels).inc()
        response: Response = error(500, "gateway error")
        try:
            response = await _forward(manager, request, namespace, name, path, body)
        finally:
            manager.metrics.inflight.labels(*labels).dec()
            manager.metrics.requests.labels(*labels, str(response.status_code)).inc()
            manager.metrics.latency.labels(*labels).observe(time.perf_counter() - started)
        return response

    return router


async def _forward(manager: ServingManager, request: Request, namespace: str, name: str, path: str,
                   body: bytes) -> Response:
    import aiohttp  # imported on first use: it costs ~0.3 s of server start

    deployment = manager.deployments[(namespace, name)]
    chosen = deployment.choose()
    if chosen is None:
        return error(503, f"InferenceService {namespace}/{name} has no revision to serve yet.")
    number, pool = chosen
    pool.last_request_at = time.monotonic()
    pool.inflight += 1
    try:
        replica = pool.pick()
        if replica is None and pool.failure is None:  # starting or scaled to zero: wait, bounded
            cold = not pool.replicas
            waited = time.perf_counter()
            replica = await pool.wait_ready(manager.settings.serving_cold_start_timeout, manager.wake)
            if replica is not None and cold:
                manager.metrics.cold_starts.labels(namespace, name).inc()
                manager.metrics.cold_start_seconds.labels(namespace, name).observe(time.perf_counter() - waited)
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD_REQUEST}
        url_path = "/" + path + (f"?{request.url.query}" if request.url.query else "")
        for _attempt in range(MAX_ATTEMPTS):
            if replica is None:
                break
            target = replica
            target.inflight += 1
            try:
                async with pool.session.request(request.method, target.url + url_path, data=body,
                                                headers=headers) as upstream:
                    content = await upstream.read()
                    return _reply(upstream.status, upstream.headers, content, revision_name(name, number))
            except aiohttp.ClientConnectorError:
                target.broken = True  # never reached it: safe to send elsewhere
                replica = pool.pick()
            except TimeoutError:
                return error(504, f"Replica of {revision_name(name, number)} did not answer in time.")
            except aiohttp.ClientError as exc:
                if not (request.method in IDEMPOTENT or is_inference(url_path)):
                    return error(502, f"Replica of {revision_name(name, number)} failed during the request: "
                                      f"{exc!r}")
                target.broken = True  # the connection broke; inference has no side effects: send it elsewhere
                replica = pool.pick()
            finally:
                target.inflight -= 1
        reason = (pool.failure or "no replica is ready").rstrip(".")
        return error(503, f"InferenceService {namespace}/{name} cannot serve ({revision_name(name, number)}): "
                          f"{reason}. See: kfbox serve get {name}")
    finally:
        pool.inflight -= 1


def is_inference(path: str) -> bool:
    """V1 ``:predict`` and V2 ``/infer``: pure functions of the request, so safe to send twice."""
    path = path.split("?", 1)[0]
    return path.endswith(":predict") or path.endswith("/infer")


def _reply(status: int, upstream_headers: Mapping[str, str], content: bytes, revision: str) -> Response:
    # lower-cased: aiohttp keeps the replica's spelling ("Content-Type"), and a second spelling
    # set below would send the header twice
    headers = {k.lower(): v for k, v in upstream_headers.items() if k.lower() in FORWARD_RESPONSE}
    headers["x-kfbox-revision"] = revision
    if status >= 400:
        content = _kserve_error_body(content)
        headers["content-type"] = "application/json"
    return Response(content=content, status_code=status, headers=headers)


def _kserve_error_body(content: bytes) -> bytes:
    """Replicas answer most errors as ``{"error": ...}``; FastAPI validation errors are reshaped to match."""
    try:
        body = json.loads(content)
    except ValueError:
        return json.dumps({"error": content.decode(errors="replace") or "error"}).encode()
    if isinstance(body, dict) and "error" in body:
        return content
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        parts = [f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in body["detail"]
                 if isinstance(d, dict)]
        return json.dumps({"error": "Invalid request: " + "; ".join(parts)}).encode()
    return json.dumps({"error": body.get("detail", body) if isinstance(body, dict) else body}).encode()
