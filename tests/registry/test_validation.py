"""Bad input gets a clear 4xx with the spec's ``{code, message}`` body and changes nothing.

In-process tier (fixture ``app_client``): what is checked is the registry's validation, error shapes and
"nothing changed"; the real server's HTTP layer is covered by tests/registry/test_conformance.py and
test_client.py, which use the upstream client against ``kfbox up``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http import server as http_server
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

pytestmark = pytest.mark.inprocess
V1 = "/api/model_registry/v1"


@pytest.fixture(scope="module")
def http(app_client: TestClient) -> Iterator[httpx.Client]:
    model = app_client.post(f"{V1}/registered_models", json={"name": "base"})
    assert model.status_code == 201
    yield app_client


def snapshot(http: httpx.Client) -> list[Any]:
    """Everything the registry holds, to prove a refused request changed nothing."""
    out = []
    for collection in ("registered_models", "model_versions", "artifacts", "serving_environments",
                       "inference_services"):
        out.append(http.get(f"{V1}/{collection}", params={"pageSize": "10000"}).json()["items"])
    return out


def assert_error(reply: httpx.Response, status: int, *words: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    # upstream's Error: code is the status text, and its 422 (a required field missing) says "Bad Request"
    expected = "Bad Request" if status == 422 else HTTPStatus(status).phrase
    assert set(body) == {"code", "message"} and body["code"] == expected, body
    for word in words:
        assert word.lower() in body["message"].lower(), body["message"]


def model_id(http: httpx.Client) -> str:
    return str(http.get(f"{V1}/registered_model", params={"name": "base"}).json()["id"])


BAD_BODIES: list[tuple[str, dict[str, str], bytes, str]] = [
    ("malformed JSON", {"content-type": "application/json"}, b'{"name": "x"', "json"),
    ("text/plain", {"content-type": "text/plain"}, b'{"name": "x"}', "content-type"),
    ("no content type", {}, b'{"name": "x"}', "content-type"),
    ("a list", {"content-type": "application/json"}, b'["x"]', "invalid"),
    ("name is a number", {"content-type": "application/json"}, b'{"name": 5}', "name"),
    ("unknown field", {"content-type": "application/json"}, b'{"name": "x", "colour": "red"}', "colour"),
    ("state not in enum", {"content-type": "application/json"}, b'{"name": "x", "state": "DEAD"}', "state"),
    ("name with a newline", {"content-type": "application/json"}, b'{"name": "a\\nb"}', "control"),
    ("name with NUL", {"content-type": "application/json"}, b'{"name": "a\\u0000b"}', "control"),
    ("name too long", {"content-type": "application/json"}, json.dumps({"name": "n" * 300}).encode(), "name"),
    ("custom property without type", {"content-type": "application/json"},
     b'{"name": "x", "customProperties": {"a": {"string_value": "s"}}}', "customProperties"),
    ("int_value not a number", {"content-type": "application/json"},
     b'{"name": "x", "customProperties": {"a": {"metadataType": "MetadataIntValue", "int_value": "1e3"}}}',
     "int_value"),
    ("double_value as a string", {"content-type": "application/json"},
     b'{"name": "x", "customProperties": {"a": {"metadataType": "MetadataDoubleValue", "double_value": "0.5"}}}',
     "double_value"),
]


@pytest.mark.parametrize(("case", "headers", "body", "word"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_create_bodies_are_400(http: httpx.Client, case: str, headers: dict[str, str], body: bytes,
                                   word: str) -> None:
    before = snapshot(http)
    assert_error(http.post(f"{V1}/registered_models", content=body, headers=headers), 400, word)
    assert snapshot(http) == before


def test_bad_version_references(http: httpx.Client) -> None:
    before = snapshot(http)
    for bad in ("0", "-1", "abc", "01", "1.5", "9999999999"):
        assert_error(http.post(f"{V1}/model_versions", json={"name": "v", "registeredModelId": bad}), 400,
                     "registeredModelId")
    assert_error(http.post(f"{V1}/model_versions", json={"name": "v", "registeredModelId": "424242"}), 404,
                 "424242")
    assert snapshot(http) == before


@pytest.mark.parametrize("bad_id", ["0", "-3", "abc", "1e3", "007", "99999999999", "%20"])
def test_ids_that_are_not_positive_integers(http: httpx.Client, bad_id: str) -> None:
    assert_error(http.get(f"{V1}/registered_models/{bad_id}"), 400, "id")
    before = snapshot(http)
    assert_error(http.patch(f"{V1}/registered_models/{bad_id}", json={"description": "x"}), 400, "id")
    assert_error(http.get(f"{V1}/model_version", params={"name": "v", "parentResourceId": bad_id}), 400,
                 "parentResourceId")
    assert snapshot(http) == before


@pytest.mark.parametrize(("params", "word"), [
    ({"pageSize": "-1"}, "pageSize"), ({"pageSize": "0"}, "pageSize"), ({"pageSize": "99999999999999"}, "pageSize"),
    ({"pageSize": "ten"}, "pageSize"), ({"pageSize": "012"}, "pageSize"), ({"pageSize": "1.5"}, "pageSize"),
    ({"orderBy": "NAME; DROP TABLE x"}, "orderBy"),
    ({"sortOrder": "SIDEWAYS"}, "sortOrder"), ({"nextPageToken": "forged"}, "nextPageToken"),
    ({"nextPageToken": "eyJ2IjowfQ.AAAAAAAAAAAAAAAAAAAAAAAA"}, "nextPageToken"),
])
def test_bad_list_parameters(http: httpx.Client, params: dict[str, str], word: str) -> None:
    assert_error(http.get(f"{V1}/registered_models", params=params), 400, word)


def test_a_page_size_upstream_allows_past_the_page_limit_is_a_full_page(http: httpx.Client) -> None:
    """Upstream's pattern allows up to 999999999 (its schemathesis tests send such sizes): kfbox answers with a page
    of at most 10000 items and says so in ``pageSize``, rather than refusing the request."""
    reply = http.get(f"{V1}/registered_models", params={"pageSize": "449742700"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["pageSize"] == 10000 and reply.json()["size"] == len(reply.json()["items"])


def test_tokens_are_bound_to_their_query(http: httpx.Client) -> None:
    mid = model_id(http)
    for i in range(3):
        assert http.post(f"{V1}/model_versions", json={"name": f"tok-{i}", "registeredModelId": mid}).status_code == 201
    token = http.get(f"{V1}/model_versions", params={"pageSize": "1"}).json()["nextPageToken"]
    assert token
    assert http.get(f"{V1}/model_versions", params={"pageSize": "1", "nextPageToken": token}).status_code == 200
    payload, _, signature = token.partition(".")
    tampered = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    assert_error(http.get(f"{V1}/model_versions", params={"pageSize": "1", "nextPageToken": tampered}), 400,
                 "nextPageToken")
    # replayed against another order or list
    assert_error(http.get(f"{V1}/model_versions", params={"pageSize": "1", "nextPageToken": token,
                                                        "sortOrder": "DESC"}), 400, "nextPageToken")
    assert_error(http.get(f"{V1}/registered_models", params={"pageSize": "1", "nextPageToken": token}), 400,
                 "nextPageToken")


@pytest.mark.parametrize("query", [
    "name = 'x' OR 1=1; DROP TABLE registry_resources",
    "name = 'x') OR ('1'='1",
    "name = \"x\" --",
    "name == 'x'",
    "name = ",
    "(name = 'x'",
    "name = 'x' AND",
    "`weird\"key` = 1",
    "name = 'a' OR " * 400 + "name = 'b'",
    "(" * 40 + "name = 'x'" + ")" * 40,
    "accuracy.float_value > 1",
    "name IN 'x'",
    "state = LIVE",
])
def test_injection_and_malformed_filters_are_400(http: httpx.Client, query: str) -> None:
    before = snapshot(http)
    assert_error(http.get(f"{V1}/registered_models", params={"filterQuery": query}), 400, "filterQuery")
    assert snapshot(http) == before


def test_string_values_in_filters_are_data(http: httpx.Client) -> None:
    hostile = "x' OR '1'='1"
    reply = http.get(f"{V1}/registered_models", params={"filterQuery": f'name = "{hostile}"'})
    assert reply.status_code == 200 and reply.json()["items"] == []
    reply = http.get(f"{V1}/registered_models", params={"filterQuery": "name LIKE '%'"})
    assert reply.json()["size"] >= 1


def test_body_over_one_mebibyte_is_413(http: httpx.Client) -> None:
    before = snapshot(http)
    big = json.dumps({"name": "big", "description": "d" * (1024 * 1024 + 1)}).encode()
    assert_error(http.post(f"{V1}/registered_models", content=big, headers={"content-type": "application/json"}),
                 413, "limit")
    assert snapshot(http) == before


def test_unicode_names_round_trip_exactly(http: httpx.Client) -> None:
    names = ["模型-α", "café\u0301", "🚀 rocket", "ﬁ-ligature", "Ω≈ç√"]  # noqa: RUF001  # noqa: RUF001
    for name in names:
        created = http.post(f"{V1}/registered_models", json={"name": name, "description": name * 2})
        assert created.status_code == 201, created.text
        found = http.get(f"{V1}/registered_model", params={"name": name}).json()
        assert found["name"] == name and found["description"] == name * 2
        assert http.get(f"{V1}/registered_models/{found['id']}").json()["name"] == name
    # a composed and a decomposed é are different names
    assert http.get(f"{V1}/registered_model", params={"name": "café"}).status_code == 404


def test_duplicates_and_immutable_fields(http: httpx.Client) -> None:
    assert_error(http.post(f"{V1}/registered_models", json={"name": "base"}), 409, "already exists")
    mid = model_id(http)
    assert_error(http.patch(f"{V1}/registered_models/{mid}", json={"name": "renamed"}), 400, "name")
    ext = http.post(f"{V1}/registered_models", json={"name": "with-ext", "externalId": "ext-1"})
    assert ext.status_code == 201
    assert_error(http.post(f"{V1}/registered_models", json={"name": "other", "externalId": "ext-1"}), 409,
                 "externalId")
    assert http.get(f"{V1}/registered_model", params={"externalId": "ext-1"}).json()["name"] == "with-ext"
    assert_error(http.get(f"{V1}/registered_model"), 400, "name")


def test_artifact_uris_are_stored_not_fetched(http: httpx.Client) -> None:
    hits: list[str] = []

    class Recorder(http_server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    trap = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    try:
        uris = [f"http://127.0.0.1:{trap.server_address[1]}/model.bin", "file:///etc/shadow",
                "s3://bucket/../../etc/passwd", "pvc://claim/" + "x" * 2000, "javascript:alert(1)"]
        version = http.post(f"{V1}/model_versions", json={"name": "uris", "registeredModelId": model_id(http)}).json()
        for i, uri in enumerate(uris):
            made = http.post(f"{V1}/model_versions/{version['id']}/artifacts",
                             json={"artifactType": "model-artifact", "name": f"a{i}", "uri": uri})
            assert made.status_code == 201, made.text
            assert http.get(f"{V1}/artifacts/{made.json()['id']}").json()["uri"] == uri
    finally:
        trap.shutdown()
    assert hits == []


@pytest.mark.parametrize("query", [
    "id = 99999999999999999999999",
    "accuracy > 1e999",
    "createTimeSinceEpoch > -99999999999999999999",
    "NOT " * 900 + "name = 'x'",
    "name IN (" + ", ".join(["'a'"] * 900) + ")",
    "epochs IN (" + ", ".join(["1"] * 300) + ")",
])
def test_hostile_filters_are_400_not_500(http: httpx.Client, query: str) -> None:
    assert_error(http.get(f"{V1}/model_versions", params={"filterQuery": query}), 400, "filterQuery")


@pytest.mark.parametrize(("body", "word"), [
    (b'{"name": "x", "description": "\\ud800"}', "json"),
    (b"[" * 50_000 + b"]" * 50_000, "nested"),
    (b'{"name": "x", "customProperties": {"a": {"metadataType": "MetadataDoubleValue", "double_value": NaN}}}',
     "double_value"),
])
def test_bodies_no_database_could_store_are_400(http: httpx.Client, body: bytes, word: str) -> None:
    before = snapshot(http)
    assert_error(http.post(f"{V1}/registered_models", content=body, headers={"content-type": "application/json"}),
                 400, word)
    assert snapshot(http) == before


def test_nul_in_query_parameters_is_400(http: httpx.Client) -> None:
    assert_error(http.get(f"{V1}/registered_model", params={"name": "a\x00b"}), 400, "NUL")
    assert_error(http.get(f"{V1}/registered_models", params={"filterQuery": "name = 'a\x00'"}), 400, "NUL")


def test_one_400_lists_every_problem(http: httpx.Client) -> None:
    """The compiled validator stops at the first mismatch; the reply still names them all."""
    before = snapshot(http)
    reply = http.post(f"{V1}/model_versions", json={
        "name": "v", "registeredModelId": model_id(http), "state": "DEAD", "author": 5,
        "customProperties": {"a": {"metadataType": "MetadataIntValue", "int_value": "x"}}})
    assert_error(reply, 400, "state", "author", "int_value")
    assert snapshot(http) == before
