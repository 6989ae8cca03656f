"""The root app is Starlette (kfbox.server.application): FastAPI's part comes with the first API route built.
Each test starts from a fresh app, so its first request is the one that builds a block of FastAPI routes:
that request and the later ones answer as under FastAPI's own app (validation errors, uploads, the document).
In-process (the app over ASGI): what is tested is the app's routing and error mapping, not a server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kfbox.config import Settings
from kfbox.db import Database
from kfbox.server.app import create_app
from kfbox.server.platform import Platform


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings.load(home=tmp_path, port=0, pipelines_spare_worker=False, serving_warm_standby=False)
    db = Database(settings.db_url)
    db.upgrade()
    try:
        with TestClient(create_app(settings, Platform(settings=settings, db=db)), base_url="http://127.0.0.1") as c:
            yield c
    finally:
        db.dispose()


def test_a_bad_body_as_the_first_request_of_an_api_is_a_400_in_its_shape(client: TestClient) -> None:
    for _ in range(2):  # the request that builds the KFP block, then one routed to the built routes
        reply = client.post("/apis/v2beta1/runs", json={"display_name": 7})
        assert reply.status_code == 400, reply.text
        assert "display_name" in reply.json()["message"] and reply.json()["code"] == 3  # KFP's InvalidArgument
    reply = client.put("/kfbox/v1/secrets/db", json={"data": "not a mapping"})  # another block, FastAPI loaded
    assert reply.status_code == 400 and "data" in reply.json()["message"], reply.text


def test_an_upload_as_the_first_request_and_after_reaches_its_handler(client: TestClient) -> None:
    # FastAPI's routes need its per-request exit stack (it closes uploaded files): without it, a 500
    for _ in range(2):
        reply = client.post("/apis/v2beta1/pipelines/upload", files={"uploadfile": ("p.yaml", b"not: [a pipeline")})
        assert reply.status_code == 400, reply.text
        assert "pipeline" in reply.json()["message"].lower()


def test_the_document_and_docs_pages_before_any_api_request(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["info"]["title"] == "kfbox"
    assert document["paths"]["/healthz"]["get"]["tags"] == ["platform"]
    for path in ("/apis/v2beta1/runs", "/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices",
                 "/kfbox/v1/secrets/{name}", "/monitoring/alerts"):
        assert path in document["paths"], path
    assert client.get("/healthz").json()["status"] == "ok"
    docs, redoc = client.get("/docs"), client.get("/redoc")
    assert docs.status_code == redoc.status_code == 200
    assert "/openapi.json" in docs.text and "/openapi.json" in redoc.text
    assert client.get("/docs/oauth2-redirect").status_code == 200
