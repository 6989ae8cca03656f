"""Routes built on first use: a block of an app's routes that costs nothing at start-up.

Building a FastAPI route analyses its signature with pydantic (~1 ms a route); the dashboard's
~80 page routes and their template environment were a tenth of ``kfbox up``. :class:`LazyRoutes`
stands in the app's route list where the block belongs; the first request that reaches it (or
the first ``/openapi.json``) builds the block and puts the real routes in its place, so matching
order, 405s, 404s and the OpenAPI document are what eager routes would give.

Example::

    install_lazy(app, lambda: build_dashboard_routes(platform))
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

_ROUTE = "kfbox.lazy_route"


class LazyRoutes(BaseRoute):
    def __init__(self, app: FastAPI, build: Callable[[], list[BaseRoute]]) -> None:
        self.app = app
        self._build = build
        self._routes: list[BaseRoute] | None = None
        self._lock = threading.Lock()

    @property
    def routes(self) -> list[BaseRoute]:
        """The real routes, built (and put in this block's place in the app) on first access."""
        if self._routes is None:
            with self._lock:
                if self._routes is None:
                    routes = self._build()
                    table = self.app.router.routes
                    if self in table:  # matching is then direct; a loop over the list going on now
                        at = table.index(self)  # sees the real routes after this one, harmlessly
                        table[at:at + 1] = routes
                    self._routes = routes
        return self._routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] = (Match.NONE, {})
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, _ROUTE: route}
            if match is Match.PARTIAL and partial[0] is Match.NONE:
                partial = (match, {**child_scope, _ROUTE: route})
        return partial

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope[_ROUTE].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)


def install_lazy(app: FastAPI, build: Callable[[], list[BaseRoute]]) -> LazyRoutes:
    """Append a lazily built block of routes to ``app``; ``/openapi.json`` builds it first."""
    block = LazyRoutes(app, build)
    app.router.routes.append(block)
    eager_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        block.routes  # noqa: B018 - built, so the document lists its routes
        return eager_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    return block
