"""Pages: Jinja2 templates (autoescaped) behind a strict Content-Security-Policy, each with a ``.json`` twin.

A page handler returns the data it shows as a plain dict; :func:`Pages.page` wraps it so that
``/runs`` renders ``runs.html`` and ``/runs.json`` returns the very same dict as JSON. Errors of
the :class:`~kfbox.errors.KfboxError` tree become an HTML error page with the message and the
status code (the ``.json`` twin keeps the API's JSON error).

Example::

    @router.get("/runs")
    @router.get("/runs.json")
    @pages.page("runs.html", "Runs")
    def runs(request: Request) -> dict[str, Any]:
        return {"runs": [...]}
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from kfbox import __version__
from kfbox.errors import KfboxError
from kfbox.server.platform import Platform
from kfbox.ui import csrf
from kfbox.ui.formats import duration, number, when

# No inline script or style anywhere: every script is a file under /static/, so injected markup cannot run.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
NAV = [("/", "Home"), ("/runs", "Runs"), ("/experiments", "Experiments"), ("/pipelines", "Pipelines"),
       ("/models", "Models"), ("/deployments", "Deployments"), ("/artifacts", "Artifacts"), ("/notebooks", "Notebooks"),
       ("/monitoring", "Monitoring")]
Handler = Callable[..., dict[str, Any]]


class Pages:
    """The template environment and the response helpers every page module uses."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.env = jinja2.Environment(loader=jinja2.PackageLoader("kfbox.ui", "templates"),
                                      autoescape=True, undefined=jinja2.StrictUndefined,
                                      trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(when=when, duration=duration, number=number, tojson_pretty=_pretty)
        from kfbox.ui.metric_chart import chart_svg
        from kfbox.ui.svg import dag_svg, task_rows

        self.env.globals.update(nav=NAV, kfbox_version=__version__, dag_svg=dag_svg, task_rows=task_rows,
                                chart_svg=chart_svg)

    def render(self, request: Request, template: str, data: dict[str, Any], title: str,
               status: int = 200) -> Response:
        token, fresh = csrf.token_for(request)
        path = request.url.path
        twin = path + "index.json" if path.endswith("/") else path + ".json"
        query = request.url.query
        html = self.env.get_template(template).render(request=request, csrf_token=token, title=title, path=path,
                                                      json_path=twin + (f"?{query}" if query else ""), **data)
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if fresh:
            csrf.set_cookie(response, token)
        return response

    def page(self, template: str, title: str | Callable[[dict[str, Any]], str]) -> Callable[[Handler], Any]:
        """Decorate a handler returning a dict: HTML at its path, the dict itself at ``<path>.json``."""
        def decorate(handler: Handler) -> Any:
            @functools.wraps(handler)
            def wrapper(request: Request, **kwargs: Any) -> Response:
                as_json = request.url.path.endswith(".json")
                try:
                    data = handler(request, **kwargs)
                except KfboxError as exc:
                    if as_json:
                        raise
                    return self.error(request, exc)
                if as_json:
                    return JSONResponse(json.loads(json.dumps(data, default=str)))
                name = title(data) if callable(title) else title
                return self.render(request, template, data, name)
            return wrapper
        return decorate

    def action(self, handler: Callable[..., Awaitable[Response]]) -> Any:
        """Decorate a form POST handler: a refusal or failure comes back as an HTML page with the message."""
        @functools.wraps(handler)
        async def wrapper(request: Request, **kwargs: Any) -> Response:
            try:
                return await handler(request, **kwargs)
            except KfboxError as exc:
                return self.error(request, exc)
        return wrapper

    def error(self, request: Request, exc: KfboxError) -> Response:
        return self.render(request, "error.html", {"message": exc.message, "status": exc.status_code},
                           f"Error {exc.status_code}", status=exc.status_code)

    @staticmethod
    def redirect(url: str) -> Response:
        """After a form POST: see the result with GET (303), so a reload does not resubmit."""
        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
