"""The root ASGI app: Starlette, with what FastAPI's app adds around its routes made on first use.

Every API builds its FastAPI routes on the first request under its paths (:mod:`kfbox.server.lazy_routes`),
so a start needs no FastAPI at all: importing it (its OpenAPI models are ~45 pydantic classes) and
pydantic was ~0.13 s of the ~0.5 s of CPU ``kfbox up`` spends to ready. :class:`App` gives FastAPI's
routes what ``FastAPI`` itself would:

* ``/openapi.json`` (FastAPI's generator over every route, each lazy block built first), ``/docs``,
  ``/docs/oauth2-redirect`` and ``/redoc``, answered as FastAPI's app answers them;
* the handler for FastAPI's ``RequestValidationError``, registered when the first block that imports
  FastAPI is built (:meth:`routes_built`) -- an exception handler added once the middleware stack exists
  reaches its ``ExceptionMiddleware`` too, where Starlette's would be ignored;
* the per-request exit stack FastAPI's routes expect in the scope (FastAPI's own middleware class, around
  the routing once FastAPI is imported; :class:`~kfbox.server.lazy_routes.LazyRoutes` opens one for the
  request that built its block).

Example::

    app = App(title="kfbox", version="1.0", on_invalid_request=reply_400)
    install_lazy(app, build_kfp_routes, prefixes=("/apis/v2beta1",))
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, ExceptionHandler

from kfbox.server.lazy_routes import LazyRoutes

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"


class App(Starlette):
    """Starlette with FastAPI's OpenAPI document, docs pages and validation errors, made on demand."""

    def __init__(self, *, title: str, version: str, description: str, on_invalid_request: ExceptionHandler,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title, self.version, self.description = title, version, description
        self.on_invalid_request = on_invalid_request
        self.openapi_schema: dict[str, Any] | None = None
        self.documented: list[Callable[[], BaseRoute]] = []
        """FastAPI routes made only for the document: the eager Starlette routes' twins (``/healthz``)."""
        self._exceptions: ExceptionMiddleware | None = None
        self._fastapi_ready = False
        self.add_route(OPENAPI_URL, self._openapi_json, include_in_schema=False)
        self.add_route(DOCS_URL, self._swagger_ui, include_in_schema=False)
        self.add_route(OAUTH2_REDIRECT_URL, self._swagger_ui_redirect, include_in_schema=False)
        self.add_route(REDOC_URL, self._redoc, include_in_schema=False)

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI document of every route, lazy blocks included (built here), as ``FastAPI.openapi``."""
        if self.openapi_schema is None:
            for route in list(self.router.routes):
                if isinstance(route, LazyRoutes):
                    route.routes  # noqa: B018 - built, so the document lists its routes
            from fastapi.openapi.utils import get_openapi

            self.routes_built()
            self.openapi_schema = get_openapi(title=self.title, version=self.version, description=self.description,
                                              routes=[*(make() for make in self.documented), *self.routes])
        return self.openapi_schema

    def routes_built(self) -> None:
        """A lazy block was built: once FastAPI is imported, the routing runs in FastAPI's per-request exit
        stack and FastAPI's validation errors get the app's handler, as in a ``FastAPI`` app."""
        if "fastapi" not in sys.modules or self._fastapi_ready:
            return
        from fastapi.exceptions import RequestValidationError
        from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware

        self._fastapi_ready = True
        self.router.middleware_stack = AsyncExitStackMiddleware(self.router.middleware_stack)
        self.add_exception_handler(RequestValidationError, self.on_invalid_request)

    def add_exception_handler(self, exc_class_or_status_code: int | type[Exception],
                              handler: ExceptionHandler) -> None:
        super().add_exception_handler(exc_class_or_status_code, handler)
        if self._exceptions is not None:  # the stack is built: Starlette's copy of the handlers is the live one
            self._exceptions.add_exception_handler(exc_class_or_status_code, handler)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        layer: Any = stack
        while not isinstance(layer, ExceptionMiddleware):  # every layer keeps the next one as .app
            layer = layer.app
        self._exceptions = layer
        return stack

    async def _openapi_json(self, request: Request) -> Response:
        return JSONResponse(self.openapi())

    async def _swagger_ui(self, request: Request) -> Response:
        from fastapi.openapi.docs import get_swagger_ui_html

        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=root + OPENAPI_URL, title=f"{self.title} - Swagger UI",
                                   oauth2_redirect_url=root + OAUTH2_REDIRECT_URL)

    async def _swagger_ui_redirect(self, request: Request) -> Response:
        from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html

        return get_swagger_ui_oauth2_redirect_html()

    async def _redoc(self, request: Request) -> HTMLResponse:
        from fastapi.openapi.docs import get_redoc_html

        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(openapi_url=root + OPENAPI_URL, title=f"{self.title} - ReDoc")
