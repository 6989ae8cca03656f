"""An API's Starlette routes answered in the short lane, below FastAPI's stack.

A registry call through the full app passes a dozen ASGI layers and FastAPI's router, which
tries the routes in order (~20 regular expressions before a registry route); together about a
fifth of a registration's CPU. :class:`DirectRoutes` is a :class:`~kfbox.server.shortcut.Shortcut`
chain for a block of the app's own routes: it claims a request only when one of them matches it
fully (path and method), found by the route's static head (the path up to its first parameter)
with a dictionary lookup and then the route's own ``matches``; it then runs that route as the
app's router would, inside the very error layers the app builds -- Starlette's
``ServerErrorMiddleware`` and ``ExceptionMiddleware`` with the app's exception handlers -- so a
reply, an error body or a crash's 500 reads byte for byte as through the full app. Anything it
does not claim (a 404, a 405, a trailing slash's redirect) goes the usual way.

The block must come before any other route of the app that could match the same requests (the
app's router takes the first full match): the registry's routes are the app's first.

Example::

    direct = DirectRoutes(app, registry_routes)
    platform.shortcuts.append(Shortcut(claims=direct.claims, app=TokenAuth(direct, platform)))
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

_MATCH = "kfbox.direct_route"


class DirectRoutes:
    """Matches ``routes`` by static head, and runs the one that matches in the app's error layers."""

    def __init__(self, app: Starlette, routes: Sequence[Route]) -> None:
        self.app = app
        self.by_head: dict[str, list[Route]] = {}
        for route in routes:
            self.by_head.setdefault(route.path.split("{", 1)[0], []).append(route)
        self._chain: ASGIApp | None = None

    def match(self, scope: Scope) -> tuple[Route, Scope] | None:
        """The route that fully matches this request and its child scope, or None."""
        path: str = scope["path"]
        heads = self.by_head
        candidates = heads.get(path)
        at = path.find("/", 1)
        while at != -1:  # each head a parameter can follow: "/a/", "/a/b/", ...
            more = heads.get(path[:at + 1])
            if more is not None:
                candidates = more if candidates is None else [*candidates, *more]
            at = path.find("/", at + 1)
        for route in candidates or ():
            found, child = route.matches(scope)
            if found is Match.FULL:
                return route, child
        return None

    def claims(self, scope: Scope) -> bool:
        """True when a route matches; the match is kept in the scope for :meth:`_dispatch`, which runs next."""
        found = self.match(scope)
        if found is None:
            return False
        scope[_MATCH] = found
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._chain is None:  # at the first request: every subsystem has added its exception handlers
            self._chain = self._error_layers()
        await self._chain(scope, receive, send)

    def _error_layers(self) -> ASGIApp:
        """As ``Starlette.build_middleware_stack``: a 500/Exception handler outermost, the rest innermost."""
        error_handler = None
        handlers = {}
        for key, value in self.app.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        inner = ExceptionMiddleware(self._dispatch, handlers=handlers, debug=self.app.debug)
        return ServerErrorMiddleware(inner, handler=error_handler, debug=self.app.debug)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = scope.pop(_MATCH, None) or self.match(scope)
        if found is None:  # claimed, so matched: only a scope changed in between gets here
            raise RuntimeError(f"no direct route for {scope['method']} {scope['path']}")
        route, child = found
        scope["app"] = self.app
        scope["router"] = self.app.router
        scope["route"] = route
        scope.update(child)
        await route.handle(scope, receive, send)
