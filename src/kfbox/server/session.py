"""Browser sessions: the token, typed once into ``/login``, becomes a signed cookie.

The cookie (``kfbox_session``) is ``HttpOnly`` (page scripts cannot read it), ``SameSite=Strict``
(other sites' pages do not send it) and signed with HMAC-SHA256 under a key derived from the
token, so changing the token ends every session. It carries an expiry and a random id;
``POST /logout`` forgets the id. A change (POST/PUT/PATCH/DELETE) authenticated by the cookie
must also carry this server's ``Origin`` (browsers send it; :mod:`kfbox.server.auth` checks it):
the CSRF proof on top of SameSite.

Example (a dashboard form)::

    <form method="post" action="/login"><input name="token" type="password">
      <input type="hidden" name="next" value="/runs"></form>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from html import escape
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from kfbox.server.lazy_routes import install_lazy
from kfbox.server.platform import Platform

COOKIE = "kfbox_session"
MAX_AGE_SECONDS = 12 * 3600
_KEY_LABEL = b"kfbox session cookie v1"


class Sessions:
    """Issues and checks session cookie values; ``None`` token: there is nothing to log in to."""

    def __init__(self, token: str | None) -> None:
        self.key = hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest() if token else None
        self.token = token
        self.revoked: set[str] = set()

    @classmethod
    def of(cls, platform: Platform) -> Sessions:
        sessions = platform.services.sessions
        if sessions is None:
            sessions = platform.services.sessions = cls(platform.settings.token)
        return sessions

    def token_matches(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def issue(self, now: float | None = None) -> str:
        assert self.key is not None, "no token: no sessions"
        payload = f"{int((now or time.time()) + MAX_AGE_SECONDS)}.{secrets.token_urlsafe(12)}"
        return f"{payload}.{self._sign(payload)}"

    def valid(self, value: str, now: float | None = None) -> bool:
        if self.key is None:
            return False
        payload, _, signature = value.rpartition(".")
        expires, _, session_id = payload.partition(".")
        if not (expires.isdigit() and hmac.compare_digest(signature.encode(), self._sign(payload).encode())):
            return False
        return int(expires) > (now or time.time()) and session_id not in self.revoked

    def revoke(self, value: str) -> None:
        if self.valid(value):
            self.revoked.add(value.rpartition(".")[0].partition(".")[2])

    def _sign(self, payload: str) -> str:
        assert self.key is not None
        digest = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def cookie_value(cookie_header: bytes) -> str | None:
    """The ``kfbox_session`` value from a ``Cookie`` header."""
    for part in cookie_header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def local_path(target: str | None) -> str:
    """``target`` if it is a path on this server, else ``/``: ``/login?next=`` is no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def install(app: Starlette, platform: Platform) -> None:
    """``GET/POST /login`` and ``POST /logout``; the dashboard may replace the GET page."""
    sessions = Sessions.of(platform)

    def routes() -> list[BaseRoute]:  # built by the first request for /login or /logout
        from fastapi import APIRouter

        router = APIRouter(tags=["platform"], include_in_schema=False)

        @router.get("/login", response_class=HTMLResponse)
        def login_page(next: str = "/") -> HTMLResponse:
            return HTMLResponse(_login_form(local_path(next), None))

        @router.post("/login")
        async def login(request: Request) -> Response:
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
            target = local_path((form.get("next") or [request.query_params.get("next", "/")])[0])
            if sessions.key is None:
                return JSONResponse({"code": "400", "message": "This server has no token; nothing to log in to."},
                                    status_code=400)
            if not sessions.token_matches((form.get("token") or [""])[0]):
                return HTMLResponse(_login_form(target, "Wrong token."), status_code=401)
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, sessions.issue(), max_age=MAX_AGE_SECONDS, path="/", httponly=True,
                                samesite="strict", secure=request.url.scheme == "https")
            return response

        @router.post("/logout")
        def logout(request: Request) -> Response:
            value = request.cookies.get(COOKIE)
            if value:
                sessions.revoke(value)
            response = RedirectResponse("/login", status_code=303)
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
            return response

        return list(router.routes)

    install_lazy(app, routes, prefixes=("/login", "/logout"))


def _login_form(target: str, error: str | None) -> str:
    message = f'<p role="alert">{escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kfbox: log in</title></head>
<body><h1>kfbox</h1>{message}
<form method="post" action="/login">
<label>Token <input name="token" type="password" autocomplete="current-password" autofocus></label>
<input type="hidden" name="next" value="{escape(target)}"><button>Log in</button></form></body></html>"""
