"""The outermost middleware: refuse a request before anything reads it, for what it *is*.

* a path with ``.``/``..`` segments (also percent-encoded twice): 400. Routing, proxying and
  auth then all see one canonical path, so nothing can climb out of an open prefix;
* a ``Host`` the server is not known by (:mod:`kfbox.server.hosts`, DNS rebinding): 400;
* a state-changing request (anything but GET/HEAD/OPTIONS) or a WebSocket from a foreign
  ``Origin``, or marked ``Sec-Fetch-Site: cross-site`` by the browser (CSRF): 403. SDKs and the
  CLI send no ``Origin``, so they pass; browsers always send it on such requests.

Pure ASGI on the scope with precomputed sets: it runs on every gateway request.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from kfbox.server.hosts import HostAllowlist
from kfbox.server.middleware import send_error
from kfbox.server.platform import Platform

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestGuard:
    def __init__(self, app: ASGIApp, platform: Platform) -> None:
        self.app = app
        self.platform = platform
        self.hosts = HostAllowlist.from_settings(platform.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        host = origin = fetch_site = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            elif key == b"origin":
                origin = value
            elif key == b"sec-fetch-site":
                fetch_site = value
        problem = self.check(scope, host, origin, fetch_site)
        if problem is None:
            await self.app(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": problem[1][:120]})
        else:
            await send_error(self.platform, scope, send, *problem)

    def check(self, scope: Scope, host: bytes | None, origin: bytes | None,
              fetch_site: bytes | None) -> tuple[int, str] | None:
        path: str = scope["path"]
        if ("/." in path or "\\" in path or "%" in path) and has_dot_segment(path):
            return 400, (f"Path {path!r} has '.' or '..' segments; send the path they resolve to. "
                         "kfbox does not resolve them, so no path can climb out of the route it names.")
        if not self.hosts.allows(host):
            shown = (host or b"").decode("latin-1")
            return 400, (f"Host {shown!r} is not a name this server answers to (DNS-rebinding defence). "
                         f"If you reach kfbox by this name, start it with: kfbox up --allowed-host "
                         f"{shown.rsplit(':', 1)[0]} (or set KFBOX_ALLOWED_HOSTS).")
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        if origin is not None and not same_origin(origin, host):
            return 403, (f"Cross-origin {scope.get('method', 'WebSocket')} refused: Origin "
                         f"{origin.decode('latin-1')!r} is not this server's. Changes must come from the "
                         "kfbox dashboard itself or from a client that sends no Origin (SDK, CLI, curl).")
        if fetch_site == b"cross-site":
            return 403, ("Cross-site request refused (Sec-Fetch-Site: cross-site): changes must come "
                         "from the kfbox dashboard itself or from an SDK/CLI client.")
        return None


def same_origin(origin: bytes, host: bytes | None) -> bool:
    """``Origin: http://127.0.0.1:8080`` matches ``Host: 127.0.0.1:8080`` (the Host is allowlisted)."""
    if host is None:
        return False
    _, sep, authority = origin.partition(b"://")
    return bool(sep) and authority.lower() == host.lower()


def has_dot_segment(path: str) -> bool:
    """True for ``/a/../b``, ``/a/./b``, ``/a/..``, and the same percent-encoded once more."""
    for candidate in (path, unquote(path)):
        if any(seg in (".", "..") for seg in candidate.replace("\\", "/").split("/")):
            return True
    return False
