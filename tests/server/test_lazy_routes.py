"""Routes built on first use (kfbox.server.lazy_routes) in the server's root app (kfbox.server.application.App):
nothing is built at start, and once a request reaches the block the app answers exactly as with eager routes,
in the same order."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from kfbox.server.application import App
from kfbox.server.lazy_routes import LazyRoutes, install_lazy


async def _invalid(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


def _root() -> App:
    return App(title="t", version="1", description="", on_invalid_request=_invalid)


def _answer(source: str) -> Callable[[Request], Response]:
    def endpoint(_: Request) -> Response:
        return JSONResponse({"from": source})

    return endpoint


def _app(built: list[int]) -> App:
    app = _root()
    app.add_route("/api/thing", _answer("api"), methods=["GET"])

    def build() -> list[BaseRoute]:
        built.append(1)
        router = APIRouter()

        @router.get("/page")
        def page() -> dict[str, str]:
            return {"from": "page"}

        @router.get("/api/thing/shadowed")
        def shadowed() -> dict[str, str]:
            return {"from": "lazy"}

        @router.get("/notes", tags=["notes"])
        def notes() -> list[str]:
            return []

        return list(router.routes)

    install_lazy(app, build)
    app.add_route("/after", _answer("after"), methods=["POST"])
    return app


def test_the_block_is_built_on_the_first_request_that_reaches_it() -> None:
    built: list[int] = []
    app = _app(built)
    with TestClient(app) as client:
        assert client.get("/api/thing").json() == {"from": "api"}  # matched before the block
        assert built == []
        assert client.get("/page").json() == {"from": "page"}
        assert built == [1]
        assert not any(isinstance(route, LazyRoutes) for route in app.router.routes), "replaced by its routes"
        assert client.get("/page").json() == {"from": "page"}
        assert client.get("/api/thing/shadowed").json() == {"from": "lazy"}
        assert client.post("/after").json() == {"from": "after"}  # routes after the block still answer
        assert client.post("/page").status_code == 405  # a partial match stays a 405
        assert client.get("/nowhere").status_code == 404
        assert built == [1]


def test_a_request_for_a_later_route_builds_it_and_still_gets_its_answer() -> None:
    built: list[int] = []
    with TestClient(_app(built)) as client:
        assert client.post("/after").json() == {"from": "after"}
        assert built == [1]


def test_the_openapi_document_lists_the_lazy_routes() -> None:
    built: list[int] = []
    with TestClient(_app(built)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert {"/page", "/notes"} <= set(paths)  # the app's eager Starlette routes are not FastAPI's to document


def test_a_block_under_prefixes_is_built_only_by_a_request_under_them() -> None:
    built: list[int] = []
    app = _root()

    def build() -> list[BaseRoute]:
        built.append(1)
        router = APIRouter()

        @router.get("/kfp/runs")
        def runs() -> list[str]:
            return ["r1"]

        return list(router.routes)

    install_lazy(app, build, prefixes=("/kfp", "/pipeline/kfp"))
    app.add_route("/other", _answer("other"), methods=["GET"])

    with TestClient(app) as client:
        assert client.get("/other").json() == {"from": "other"}  # after the block: passes it unbuilt
        assert client.get("/nowhere").status_code == 404
        assert built == []
        assert client.post("/kfp/runs").status_code == 405  # under a prefix: built, and a partial match
        assert built == [1]
        assert client.get("/kfp/runs").json() == ["r1"]
        assert client.get("/other").json() == {"from": "other"}
