"""Routes built on first use: a block of an app's routes that costs nothing at start-up.

Building a FastAPI route analyses its signature with pydantic (~1 ms a route); the dashboard's
~80 page routes and their template environment were a tenth of ``kfbox up``. :class:`LazyRoutes`
stands in the app's route list where the block belongs; the first request that reaches it (or
the first ``/openapi.json``) builds the block and puts the real routes in its place, so matching
order, 405s, 404s and the OpenAPI document are what eager routes would give.

The root app is Starlette (:class:`kfbox.server.application.App`, so a start imports no FastAPI). A
built block tells the app (``routes_built``), which then wraps its routing in the exit stack FastAPI's
own app opens for its routes (``AsyncExitStackMiddleware``: it closes uploaded files) and registers its
handler for FastAPI's validation errors; a request routed through the block itself (the one that built
it) gets its own exit stack here.

A block whose routes all sit under known path prefixes (an API mounted at ``/apis/v2beta1``)
declares them: a request for any other path then passes the block without building it, so a
request to a later API or a 404 does not pay for this one.

Example::

    install_lazy(app, lambda: build_dashboard_routes(platform))
    install_lazy(app, lambda: build_kfp_routes(service), prefixes=("/apis/v2beta1",))
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

_ROUTE = "kfbox.lazy_route"


class LazyRoutes(BaseRoute):
    def __init__(self, app: Starlette, build: Callable[[], list[BaseRoute]], prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self._build = build
        self._prefixes = prefixes
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
                    built = getattr(self.app, "routes_built", None)
                    if built is not None:
                        built()
        return self._routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] = (Match.NONE, {})
        if self._prefixes and not get_route_path(scope).startswith(self._prefixes):
            return partial  # none of the block's routes can match: nothing to build
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, _ROUTE: route}
            if match is Match.PARTIAL and partial[0] is Match.NONE:
                partial = (match, {**child_scope, _ROUTE: route})
        return partial

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope[_ROUTE]
        if "fastapi" in sys.modules:  # routed before the app opened FastAPI's exit stack (routes_built): open one
            from fastapi.middleware.asyncexitstack import AsyncExitStackMiddleware

            await AsyncExitStackMiddleware(route.handle)(scope, receive, send)
        else:
            await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)


def install_lazy(app: Starlette, build: Callable[[], list[BaseRoute]], prefixes: tuple[str, ...] = ()) -> LazyRoutes:
    """Append a lazily built block of routes to ``app`` (the server's :class:`~kfbox.server.application.App`,
    whose ``/openapi.json`` builds every block first).

    ``prefixes``: when given, every route the block builds must match only paths starting with one of them.
    """
    block = LazyRoutes(app, build, prefixes)
    app.router.routes.append(block)
    return block
