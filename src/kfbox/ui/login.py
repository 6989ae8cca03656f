"""The dashboard's login page (the session itself is :mod:`kfbox.server.session`: POST /login
checks the token and sets the HttpOnly, SameSite=Strict cookie; this is only the styled form)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kfbox.server.platform import Platform
from kfbox.server.session import local_path
from kfbox.ui.render import Pages


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    @pages.page("login.html", "Log in")
    def login(request: Request, next: str = "/") -> dict[str, Any]:
        return {"next": local_path(next), "needed": bool(platform.settings.token)}

    return router
