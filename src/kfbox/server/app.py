"""The app factory: one FastAPI app, every subsystem mounted by its ``install`` hook.

Example::

    app = create_app(Settings.load(home="/tmp/kfbox"))
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kfbox import __version__
from kfbox.config import Settings
from kfbox.db import Database
from kfbox.errors import KfboxError
from kfbox.server import session
from kfbox.server.auth import TokenAuth
from kfbox.server.exposition import Exposition, ScrapeRoute
from kfbox.server.guard import RequestGuard
from kfbox.server.middleware import BodyLimit, RequestMetrics
from kfbox.server.platform import Platform
from kfbox.storage.space import insufficient_storage

SUBSYSTEMS = [
    "kfbox.registry.service",
    "kfbox.pipelines.service",
    "kfbox.pipelines.schedule_api",
    "kfbox.pipelines.secret_api",
    "kfbox.serving.service",
    "kfbox.monitoring.service",
    "kfbox.ui.service",
]


def create_app(settings: Settings, platform: Platform | None = None) -> FastAPI:
    platform = platform or Platform(settings=settings, db=Database(settings.db_url))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for hook in platform.on_startup:
            hook()
        try:
            yield
        finally:
            for hook in reversed(platform.on_shutdown):
                hook()

    app = FastAPI(title="kfbox", version=__version__, lifespan=lifespan,
                  description="Kubeflow's own APIs, embedded: KFP, Model Registry and KServe on one machine.")
    app.state.platform = platform
    _install_error_handlers(app, platform)

    # response_model=None: no pydantic field for the reply, so a start with no eager route that has one
    # never imports pydantic.v1 (FastAPI's check of every field's type imports it: ~15 ms)
    @app.get("/healthz", tags=["platform"], response_model=None)
    def healthz() -> dict[str, str]:
        platform.db.ping()
        return {"status": "ok", "version": __version__}

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
    app.add_middleware(RequestMetrics, platform=platform)
    return app


def _install_error_handlers(app: FastAPI, platform: Platform) -> None:
    def reply(request: Request, status: int, message: str) -> JSONResponse:
        return JSONResponse(platform.render_error(request.url.path, status, message), status_code=status)

    @app.exception_handler(KfboxError)
    async def kfbox_error(request: Request, exc: KfboxError) -> JSONResponse:
        return reply(request, exc.status_code, exc.message)

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError) -> JSONResponse:
        full = insufficient_storage(exc, str(platform.settings.home))  # anything else stays a 500
        if full is None:
            raise exc
        return reply(request, full.status_code, full.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return reply(request, 400, describe_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"No API at {request.method} {request.url.path}. The API is described at /openapi.json."
        return reply(request, exc.status_code, message)


def describe_validation_error(exc: RequestValidationError) -> str:
    """One readable sentence per problem: where it is and what is wrong."""
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts)
