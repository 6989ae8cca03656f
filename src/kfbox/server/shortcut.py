"""A short middleware chain for one kind of request: the inference gateway's hop costs almost nothing.

A request through the full app passes uvicorn's proxy-headers middleware, FastAPI, Starlette's
error and exception layers, FastAPI's body-limit and telemetry wrappers and the platform's own
middleware before it reaches the feature that answers it: about a dozen ASGI layers, each a
coroutine and most a wrapped ``send``. For a gateway request (a proxied inference call, where
the hop should cost next to nothing) only the platform's checks matter. A feature registers a
:class:`Shortcut` (a cheap test of the request and its own chain, e.g. host routing -> token auth
-> gateway); the app factory puts the same outer middleware in front of it that the full stack has
(per-route metrics, the guard, the body limit: the very classes, so a refusal reads word for word
the same and is counted the same), and the server's protocol (:mod:`kfbox.server.protocol`) runs
that chain instead of the whole app for the requests it claims. Everything else goes the usual way.

Example::

    platform.shortcuts.append(Shortcut(claims=lambda scope: scope["path"].startswith("/serving/"),
                                       app=HostRouting(TokenAuth(gateway, platform), domain)))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Scope


@dataclasses.dataclass(frozen=True)
class Shortcut:
    claims: Callable[[Scope], bool]
    """True for a request this chain answers; called on every HTTP request, so it must be cheap."""
    app: ASGIApp
    """The feature's own chain, from the middleware the full stack has inside the body limit."""


class ShortLane:
    """The shortcuts with the platform's outer middleware in front: :meth:`claim` picks the chain for a request."""

    def __init__(self, shortcuts: Sequence[Shortcut], outer: Callable[[ASGIApp], ASGIApp]) -> None:
        self.routes = tuple((shortcut.claims, outer(shortcut.app)) for shortcut in shortcuts)

    def claim(self, scope: Scope) -> ASGIApp | None:
        """The chain that answers this request, or None: the full app does. Shortcuts are tried in order:
        one whose middleware sits further out in the full stack (host routing) must come first."""
        for claims, app in self.routes:
            if claims(scope):
                return app
        return None
