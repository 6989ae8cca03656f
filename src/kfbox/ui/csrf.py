"""CSRF protection for the dashboard's forms: a double-submit token plus an Origin check.

Every page sets a random token in an HttpOnly, SameSite=Strict cookie and writes the same
token into each form's hidden ``csrf_token`` field. A form POST is accepted only when the
field equals the cookie (a foreign site can neither read the cookie nor the page) and, when
the browser sends ``Origin`` (all do on POST), that origin is this server's own.

Example::

    @router.post("/runs/{run_id}/terminate")
    async def terminate(request: Request, run_id: str) -> Response:
        form = await csrf.checked_form(request)
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import Response

from kfbox.errors import KfboxError

COOKIE = "kfbox_csrf"
FIELD = "csrf_token"


class Forbidden(KfboxError):
    status_code = 403


def token_for(request: Request) -> tuple[str, bool]:
    """The request's CSRF token and whether it is new (then the response must set the cookie)."""
    given = request.cookies.get(COOKIE, "")
    if len(given) == 43 and given.replace("-", "").replace("_", "").isalnum():
        return given, False
    return secrets.token_urlsafe(32), True


def set_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")


def check_origin(request: Request) -> None:
    """Refuse a state change sent from another site (Origin, else Referer, must name this host)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return  # not a browser (curl, scripts): the token check below still applies
    parts = urlsplit(source)
    host = request.headers.get("host", "")
    if source == "null" or parts.netloc.lower() != host.lower():
        raise Forbidden(f"Refused a form sent from {source!r}: dashboard forms are accepted only from "
                        f"pages of this server ({host}). Open the page here and submit it again.")


async def checked_form(request: Request) -> dict[str, Any]:
    """The POSTed form, after the Origin and token checks; raises Forbidden otherwise."""
    check_origin(request)
    form = await request.form()
    sent = str(form.get(FIELD) or "")
    cookie = request.cookies.get(COOKIE, "")
    if not cookie or not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise Forbidden("The form's CSRF token is missing or stale. Reload the page and submit it again.")
    return {key: value for key, value in form.multi_items() if key != FIELD} | {
        key: form.getlist(key) for key in form if len(form.getlist(key)) > 1}
