"""Token auth, decided on the route that is served.

It sits *inside* host routing (``Host: NAME.NS.<domain>`` has already become
``/serving/NS/NAME/...``) and behind :class:`~kfbox.server.guard.RequestGuard`, which refuses
dot segments: the path checked here is the path the router dispatches. A gateway request is
therefore never under an open path. Open: ``/healthz`` (liveness), ``/login``, ``/logout``, and files under
``/static/``; everything else (every API family, ``/metrics``, ``/docs``, the dashboard) needs
``Authorization: Bearer <token>`` or a valid session cookie (:mod:`kfbox.server.session`); a change
made with the cookie must also carry the server's own ``Origin`` (the guard has already refused
a foreign one; here an absent one is refused).
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from kfbox.server.guard import SAFE_METHODS, has_dot_segment
from kfbox.server.middleware import send_error
from kfbox.server.platform import Platform
from kfbox.server.session import Sessions, cookie_value

OPEN_PATHS = frozenset({"/healthz", "/login", "/logout"})
STATIC_PREFIX = "/static/"
GATEWAY_PREFIX = "/serving/"


class TokenAuth:
    """When a token is configured every route but the open ones needs the token or a session."""

    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        self.sessions = Sessions.of(platform)
        self.expected = f"Bearer {platform.settings.token}".encode() if platform.settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.expected is None or scope["type"] not in ("http", "websocket") or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = cookie = origin = accept = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value
            elif key == b"cookie":
                cookie = value
            elif key == b"origin":
                origin = value
            elif key == b"accept":
                accept = value
        if authorization is not None and hmac.compare_digest(authorization, self.expected):
            await self.app(scope, receive, send)
            return
        session = cookie_value(cookie) if cookie is not None else None
        if session is not None and self.sessions.valid(session):
            if origin is None and scope.get("method", "GET") not in SAFE_METHODS:
                await send_error(self.platform, scope, send, 403, (
                    "A change made with the session cookie must carry this server's Origin header "
                    "(browsers send it; it is the CSRF proof). Scripts should send "
                    "'Authorization: Bearer <token>' instead."))
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "Missing or wrong token."})
            return
        if (scope["method"] == "GET" and accept is not None and b"text/html" in accept
                and not scope["path"].startswith(GATEWAY_PREFIX)):  # a model's host has no /login
            await _redirect_to_login(scope, send)
            return
        await send_error(self.platform, scope, send, 401, "Missing or wrong bearer token. "
                         "Send 'Authorization: Bearer <token>' (the token kfbox up was given), "
                         "or log in at /login in a browser.", [(b"www-authenticate", b"Bearer")])


def is_open(path: str) -> bool:
    """Exact routes, and static files whose path cannot climb out of ``/static/``."""
    return path in OPEN_PATHS or (path.startswith(STATIC_PREFIX) and not has_dot_segment(path))


async def _redirect_to_login(scope: Scope, send: Send) -> None:
    target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
    location = "/login?next=" + quote(target, safe="")
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
