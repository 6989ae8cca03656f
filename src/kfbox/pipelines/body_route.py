"""The route class of the KFP API routers: JSON bodies decoded by kfbox's own parser, so a bad body is a
KFP error that says why (imported by both KFP routers; kept apart so neither imports the other)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from kfbox.errors import InvalidInput
from kfbox.parsing import load_json


class JsonBodyRoute(APIRoute):
    """Decodes JSON bodies with :func:`kfbox.parsing.load_json` before FastAPI does.

    FastAPI turns any decoding failure into "There was an error parsing the body"; decoding
    first gives the client the reason (nested too deeply, not JSON, where) as a KFP error. A body
    without a content type is read as JSON, as FastAPI does; every KFP body is a JSON object.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media in ("", "application/json") or media.endswith("+json"):
                body = await request.body()
                if body:
                    value = load_json(body)
                    if not isinstance(value, dict):
                        raise InvalidInput(f"The request body must be a JSON object; got {type(value).__name__}.")
                    request._json = value  # starlette's Request.json() returns this
            return await handler(request)
        return route
