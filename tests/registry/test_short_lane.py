"""Registry calls in the server's short lane (kfbox.server.direct_routes): a real ``kfbox up`` answers
each one as the whole app does in process -- status, headers and body, errors and auth included --
and the lane claims only requests a registry route matches (a 405, a trailing slash or a model's
Host still go through the whole app, or to the gateway)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from kfbox.config import Settings
from kfbox.db import Database
from kfbox.server.app import create_app
from kfbox.server.platform import Platform
from tests.support import ServerProcess

V1 = "/api/model_registry/v1"
LEGACY = "/api/model_registry/v1alpha3"
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VERSION = {"name": "v1", "registeredModelId": "1", "author": "a",
           "customProperties": {"accuracy": {"metadataType": "MetadataDoubleValue", "double_value": 0.97}}}
ARTIFACT = {"artifactType": "model-artifact", "name": "m", "uri": "s3://b/m", "modelFormatName": "sklearn"}
# (method, path, body or raw bytes, extra headers): a registration, reads, a change, and each kind of refusal
CALLS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", f"{V1}/registered_models", {"name": "m", "owner": "o"}, AUTH),
    ("POST", f"{V1}/model_versions", VERSION, AUTH),
    ("POST", f"{V1}/model_versions/2/artifacts", ARTIFACT, AUTH),
    ("GET", f"{V1}/registered_models/1", None, AUTH),
    ("GET", f"{V1}/registered_model?name=m", None, AUTH),
    ("GET", f"{LEGACY}/model_versions/2", None, AUTH),
    ("PATCH", f"{V1}/registered_models/1", {"description": "d"}, AUTH),
    ("POST", f"{V1}/registered_models", {"name": "m"}, AUTH),                       # 409
    ("POST", f"{V1}/registered_models", {"name": "x", "colour": "red"}, AUTH),      # 400 unknown field
    ("POST", f"{V1}/registered_models", {"owner": "o"}, AUTH),                      # 422 required
    ("POST", f"{V1}/registered_models", b"name=m", {**AUTH, "content-type": "text/plain"}),  # 400
    ("GET", f"{V1}/registered_models/999", None, AUTH),                             # 404
    ("GET", f"{V1}/registered_models/abc", None, AUTH),                             # 400
    ("GET", f"{V1}/registered_models/1", None, {}),                                 # 401
    ("DELETE", f"{V1}/registered_models/1", None, AUTH),                            # 405: not claimed
    ("GET", f"{V1}/registered_models/1/", None, AUTH),                              # trailing slash: not claimed
    ("GET", f"{V1}/registered_models/1", None, {**AUTH, "host": "iris.default.example.com"}),  # the gateway's
]
STAMP = re.compile(rb'"(createTimeSinceEpoch|lastUpdateTimeSinceEpoch)":"\d+"')


def settings(home: Path) -> Settings:
    return Settings.load(home=home, port=0, token=TOKEN, pipelines_spare_worker=False, serving_warm_standby=False)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "in-process").mkdir()
    config = settings(tmp_path / "in-process")
    db = Database(config.db_url)
    db.upgrade()
    yield create_app(config, Platform(settings=config, db=db))
    db.dispose()


def seen(reply: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    """What a client sees, less what differs by clock (the Date header, the stored timestamps) and the server's name."""
    headers = {k: v for k, v in reply.headers.items() if k not in ("date", "server")}
    return reply.status_code, headers, STAMP.sub(rb'"\1":"T"', reply.content)


def call(client: httpx.Client | TestClient, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    content = body if isinstance(body, bytes) else None
    return client.request(method, path, json=None if content is not None else body, content=content, headers=headers)


def test_a_real_server_answers_registry_calls_as_the_whole_app(app: Any, tmp_path: Path) -> None:
    server = ServerProcess.start(tmp_path / "home", token=TOKEN)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as real, \
                TestClient(app, base_url=server.url, follow_redirects=False) as whole:
            for method, path, body, headers in CALLS:
                short = call(real, method, path, body, headers)
                full = call(whole, method, path, body, headers)
                assert seen(short) == seen(full), (method, path, headers)
            assert call(real, *CALLS[0][:3], AUTH).status_code == 409  # the first call did register
    finally:
        server.stop()


def claimant(app: Any, method: str, path: str, host: str = "127.0.0.1:8080") -> str | None:
    """The kind of short chain that claims the request (by its claim test's owner), None for the whole app."""
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "headers": [(b"host", host.encode())]}
    for claims, _ in app.state.short_lane.routes:
        if claims(scope):
            return type(claims.__self__).__name__
    return None


def test_the_short_lane_claims_what_a_registry_route_matches(app: Any) -> None:
    for method, path in (("POST", f"{V1}/registered_models"), ("GET", f"{V1}/registered_models/7"),
                         ("PATCH", f"{LEGACY}/model_versions/7"), ("POST", f"{V1}/model_versions/7/artifacts"),
                         ("GET", f"{V1}/registered_model"), ("GET", f"{V1}/inference_services/3/model"),
                         ("GET", f"{LEGACY}/experiment_runs/metric_history"), ("GET", f"{V1}/openapi.json")):
        assert claimant(app, method, path) == "DirectRoutes", (method, path)
    for method, path in (("DELETE", f"{V1}/registered_models/7"), ("GET", f"{V1}/registered_models/7/"),
                         ("GET", f"{V1}/colours"), ("GET", f"{V1}"), ("GET", "/apis/v2beta1/runs"),
                         ("GET", "/healthz")):
        assert claimant(app, method, path) is None, (method, path)
    # a model's Host is the gateway's whatever the path, as host routing runs first in the whole app
    assert claimant(app, "GET", f"{V1}/registered_models/7", host="iris.default.example.com") == "HostRouting"
