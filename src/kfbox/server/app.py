"""The app factory: one app (:class:`~kfbox.server.application.App`), every subsystem mounted by its ``install`` hook.

Example::

    app = create_app(Settings.load(home="/tmp/kfbox"))
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from kfbox import __version__
from kfbox.config import Settings
from kfbox.db import Database
from kfbox.errors import KfboxError
from kfbox.server import session
from kfbox.server.application import App
from kfbox.server.auth import TokenAuth
from kfbox.server.exposition import Exposition, ScrapeRoute
from kfbox.server.guard import RequestGuard
from kfbox.server.middleware import BodyLimit, HttpMetrics, RequestMetrics
from kfbox.server.platform import Platform
from kfbox.server.shortcut import ShortLane
from kfbox.storage.space import insufficient_storage

if TYPE_CHECKING:
    from fastapi.exceptions import RequestValidationError

SUBSYSTEMS = [
    "kfbox.registry.service",
    "kfbox.pipelines.service",
    "kfbox.pipelines.schedule_api",
    "kfbox.pipelines.secret_api",
    "kfbox.serving.service",
    "kfbox.monitoring.service",
    "kfbox.ui.service",
]


def create_app(settings: Settings, platform: Platform | None = None) -> App:
    platform = platform or Platform(settings=settings, db=Database(settings.db_url))

    @asynccontextmanager
    async def lifespan(_: App) -> AsyncIterator[None]:
        for hook in platform.on_startup:
            hook()
        try:
            yield
        finally:
            for hook in reversed(platform.on_shutdown):
                hook()

    def reply(request: Request, status: int, message: str) -> JSONResponse:
        return JSONResponse(platform.render_error(request.url.path, status, message), status_code=status)

    async def invalid(request: Request, exc: Exception) -> Response:  # FastAPI's RequestValidationError
        return reply(request, 400, describe_validation_error(exc))  # type: ignore[arg-type]

    app = App(title="kfbox", version=__version__, lifespan=lifespan, on_invalid_request=invalid,
              description="Kubeflow's own APIs, embedded: KFP, Model Registry and KServe on one machine.")
    app.state.platform = platform
    _install_error_handlers(app, platform, reply)

    def healthz() -> dict[str, str]:
        platform.db.ping()
        return {"status": "ok", "version": __version__, **{name: field() for name, field in platform.health.items()}}

    def healthz_route(_: Request) -> Response:  # sync: Starlette runs it in a thread, as FastAPI did
        return JSONResponse(healthz())

    def healthz_doc() -> BaseRoute:  # the same endpoint as FastAPI declares it, for /openapi.json
        from fastapi.routing import APIRoute

        return APIRoute("/healthz", healthz, methods=["GET"], tags=["platform"], response_model=None)

    app.add_route("/healthz", healthz_route, methods=["GET"])
    app.documented.append(healthz_doc)

    # middleware added first runs innermost: auth sees the path after host routing rewrote it,
    # i.e. the route that is served; the guard runs before anything reads the request, inside
    # the metrics only (so refused requests are counted too, as route "unmatched")
    app.add_middleware(TokenAuth, platform=platform)
    for name in SUBSYSTEMS:
        importlib.import_module(name).install(app, platform)
    session.install(app, platform)

    app.add_middleware(BodyLimit, platform=platform)
    if settings.guard_checks:
        app.add_middleware(RequestGuard, platform=platform)
    # GET /metrics: its own Host check and token auth, then the writer (no routing, no middleware)
    app.add_middleware(ScrapeRoute, platform=platform, exposition=Exposition(platform.metrics))
    http_metrics = HttpMetrics(platform)
    app.add_middleware(RequestMetrics, metrics=http_metrics)

    def outer(chain: ASGIApp) -> ASGIApp:
        """The full stack's middleware outside the body limit, in the same order, in front of a short chain."""
        chain = BodyLimit(chain, platform)
        if settings.guard_checks:
            chain = RequestGuard(chain, platform)
        return RequestMetrics(chain, http_metrics)

    # the server's protocol answers the requests a shortcut claims (the gateway's) with its short chain
    app.state.short_lane = ShortLane(platform.shortcuts, outer)
    return app


def _install_error_handlers(app: App, platform: Platform, reply: Callable[[Request, int, str], JSONResponse]) -> None:
    async def kfbox_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, KfboxError)
        return reply(request, exc.status_code, exc.message)

    async def os_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, OSError)
        full = insufficient_storage(exc, str(platform.settings.home))  # anything else stays a 500
        if full is None:
            raise exc
        return reply(request, full.status_code, full.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"No API at {request.method} {request.url.path}. The API is described at /openapi.json."
        return reply(request, exc.status_code, message)

    app.add_exception_handler(KfboxError, kfbox_error)
    app.add_exception_handler(OSError, os_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def describe_validation_error(exc: RequestValidationError) -> str:
    """One readable sentence per problem: where it is and what is wrong."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)
