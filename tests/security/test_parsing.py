"""Hostile input to the parsers: a clear 400, never a 500, never the server's memory (issue 8 items 7, 8).

Each case was a 500 (OverflowError, TypeError, RecursionError from SQLite, PostgreSQL or the
decoders) or, for the YAML bomb, a stored document whose aliases expand ~10^6-fold. They are
sent to a real ``kfbox up`` as raw HTTP, the way an attacker or a confused script would.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kfbox.errors import InvalidInput
from kfbox.parsing import MAX_DEPTH, client_input, load_json, load_yaml_documents
from tests.support import ServerProcess

KFP = "/apis/v2beta1"
MR = "/api/model_registry/v1alpha3"
LISTS = ("/runs", "/pipelines", "/experiments")


@pytest.fixture(scope="module")
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server  # the package's plain server (tests/security/conftest.py)


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    # a fresh connection per request: one answer must not be able to poison the next
    with server.client() as client:
        client.headers["Connection"] = "close"
        yield client


def assert_400(reply: httpx.Response, *words: str) -> dict[str, Any]:
    assert reply.status_code == 400, f"{reply.status_code}: {reply.text[:300]}"
    body: dict[str, Any] = reply.json()
    message = str(body.get("message", body))
    for word in words:
        assert word.lower() in message.lower(), message
    return body


def token(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize("artifact_id", ["99999999999999999999", "%C2%B2", "-1", "1e3", "0x10", " 1"])
def test_artifact_ids_that_are_not_ids(http: httpx.Client, artifact_id: str) -> None:
    assert_400(http.get(f"{KFP}/artifacts/{artifact_id}"), "artifact id")


@pytest.mark.parametrize("page_token", [token({"offset": 1e30}), token({"offset": 10**30}), token({"offset": -5}),
                                        token({"offset": True}), token({"offset": "1e30"}), token([1]),
                                        token({"offset": [1] * 3}), "garbage!!", "%%%", "e30="])
def test_page_tokens_that_were_never_issued(http: httpx.Client, page_token: str) -> None:
    for path in LISTS:
        assert_400(http.get(KFP + path, params={"page_token": page_token}), "page_token")


BAD_PREDICATES: list[tuple[dict[str, Any], str]] = [
    ({"key": "display_name", "operation": "EQUALS", "int_value": "abc"}, "whole number"),
    ({"key": "created_at", "operation": "EQUALS", "int_value": 10**30}, "64 bits"),
    ({"key": "created_at", "operation": "EQUALS", "long_value": "-99999999999999999999"}, "64 bits"),
    ({"key": "created_at", "operation": "GREATER_THAN", "timestamp_value": 1e300}, "RFC 3339"),
    ({"key": "created_at", "operation": "GREATER_THAN", "timestamp_value": "99999-01-01T00:00:00Z"}, "RFC 3339"),
    ({"key": "created_at", "operation": "GREATER_THAN", "timestamp_value": {"seconds": 1}}, "RFC 3339"),
    ({"key": "display_name", "operation": "EQUALS", "string_value": {"a": 1}}, "string"),
    ({"key": "display_name", "operation": "EQUALS", "string_value": None}, "string"),
    ({"key": "display_name", "operation": "IN", "string_values": {"values": [{"a": 1}]}}, "string"),
    ({"key": "display_name", "operation": "IN", "string_values": ["not", "wrapped"]}, "values"),
    ({"key": "created_at", "operation": "IN", "int_values": {"values": ["x"]}}, "whole number"),
    ({"key": "display_name", "operation": "EQUALS", "int_value": 5}, "compares text"),
    ({"key": "created_at", "operation": "EQUALS", "string_value": "yesterday"}, "timestamp_value"),
    ({"key": "display_name", "operation": "EQUALS", "long_value": 1.5}, "whole number"),
    ({"key": "display_name", "operation": "EQUALS", "int_value": True}, "whole number"),
    ({"key": {"nested": "key"}, "operation": "EQUALS", "string_value": "x"}, "field name"),
    ({"key": "display_name", "operation": ["EQUALS"], "string_value": "x"}, "operation"),
    ({"key": "display_name", "operation": "IS_SUBSTRING", "string_value": ["a"]}, "string"),
    ("not an object", "must be an object"),  # type: ignore[list-item]
]


@pytest.mark.parametrize(("predicate", "word"), BAD_PREDICATES, ids=[json.dumps(p[0])[:60] for p in BAD_PREDICATES])
def test_filter_predicates_with_wrong_typed_values(http: httpx.Client, predicate: dict[str, Any], word: str) -> None:
    for path in LISTS:
        assert_400(http.get(KFP + path, params={"filter": json.dumps({"predicates": [predicate]})}), word)


def test_filters_that_are_not_filters(http: httpx.Client) -> None:
    assert_400(http.get(f"{KFP}/runs", params={"filter": "[" * 3000 + "]" * 3000}), "nested too deeply")
    assert_400(http.get(f"{KFP}/runs", params={"filter": '{"predicates": NaN}'}), "predicates")
    assert_400(http.get(f"{KFP}/runs", params={"filter": "{"}), "not valid JSON", "example")


def test_well_typed_filters_still_work(http: httpx.Client) -> None:
    created = http.post(f"{KFP}/experiments", json={"display_name": "parsing-ok"})
    assert created.status_code == 200, created.text
    for predicate in ({"key": "display_name", "operation": "EQUALS", "string_value": "parsing-ok"},
                      {"key": "created_at", "operation": "GREATER_THAN", "timestamp_value": "2000-01-01T00:00:00Z"},
                      {"key": "created_at", "operation": "GREATER_THAN", "long_value": "946684800000"},
                      {"key": "display_name", "operation": "IN", "string_values": {"values": ["parsing-ok"]}}):
        reply = http.get(f"{KFP}/experiments", params={"filter": json.dumps({"predicates": [predicate]})})
        assert reply.status_code == 200, reply.text
        assert "parsing-ok" in [e["display_name"] for e in reply.json()["experiments"]], predicate


@pytest.mark.parametrize("path", ["/experiments", "/runs", "/pipelines", "/pipelines/create"])
def test_json_nested_2000_deep(http: httpx.Client, path: str) -> None:
    just_over = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    for body in ("[" * 2000 + "]" * 2000, '{"a":' * 2000 + "1" + "}" * 2000, just_over):
        assert_400(http.post(KFP + path, content=body, headers={"content-type": "application/json"}),
                   "nested too deeply")
    assert_400(http.post(MR + "/registered_models", content="[" * 2000 + "]" * 2000,
                         headers={"content-type": "application/json"}), "nested too deeply")


def upload(http: httpx.Client, text: str, name: str = "p.yaml") -> httpx.Response:
    return http.post(f"{KFP}/pipelines/upload", files={"uploadfile": (name, text.encode())})


def test_deeply_nested_yaml_upload(http: httpx.Client) -> None:
    assert_400(upload(http, "[" * 5000 + "]" * 5000), "nested more than")
    assert_400(upload(http, "".join("  " * i + "a:\n" for i in range(MAX_DEPTH + 5)) + "  " * 105 + "x\n"),
               "nested more than")


def billion_laughs(levels: int) -> str:
    lines = ['lol0: &lol0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_bomb_is_refused_before_it_expands(http: httpx.Client) -> None:
    bomb = billion_laughs(9)  # 10^9 items once expanded, under 1 KB as text
    assert len(bomb) < 3000
    body = assert_400(upload(http, bomb), "anchor or alias")
    assert "line 1" in body["message"]
    # an alias without a bomb is refused too: one rule, nothing to tune
    assert_400(upload(http, "a: &x 1\nb: *x\n"), "anchor or alias")
    listed = http.get(f"{KFP}/pipelines", params={"page_size": 1000}).json()
    assert not any(p["display_name"] == "p.yaml" for p in listed.get("pipelines", []))


def test_a_compiled_pipeline_still_uploads(http: httpx.Client, tmp_path: Path) -> None:
    from kfp import compiler

    from tests.pipelines import sample_pipelines as samples

    package = tmp_path / "typed.yaml"
    compiler.Compiler().compile(samples.typed, str(package))
    reply = http.post(f"{KFP}/pipelines/upload", params={"name": "parsing-typed"},
                      files={"uploadfile": ("typed.yaml", package.read_bytes())})
    assert reply.status_code == 200, reply.text


def test_loaders_directly() -> None:
    assert load_yaml_documents("a: 1\n---\n\n---\nb: [1, {c: d}]\n") == [{"a": 1}, {"b": [1, {"c": "d"}]}]
    assert load_json(b'{"a": [1]}') == {"a": [1]}
    for text in ("!!python/object/apply:os.system ['true']", "a: !!python/name:os.system x"):
        with pytest.raises(InvalidInput, match="not valid YAML"):
            load_yaml_documents(text)
    with pytest.raises(InvalidInput, match="nested too deeply"):
        load_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))


def test_the_last_resort_guard_blames_the_client_only_for_parsing() -> None:
    with pytest.raises(InvalidInput, match="filter could not be read"), client_input("filter"):
        int("1e30")
    # anything that is not a decoding error passes through: a server bug stays a 500
    empty: dict[str, int] = {}
    with pytest.raises(KeyError), client_input("filter"):
        empty["missing"]


ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"


def assert_status_400(reply: httpx.Response, *words: str) -> None:
    """The InferenceService API answers as a Kubernetes API server: a ``Status`` body, code 400."""
    assert reply.status_code == 400, f"{reply.status_code}: {reply.text[:300]}"
    body = reply.json()
    assert body["kind"] == "Status" and body["code"] == 400, body
    for word in words:
        assert word.lower() in body["message"].lower(), body["message"]


def test_inference_service_bodies_nested_2000_deep(http: httpx.Client) -> None:
    deep = "[" * 2000 + "]" * 2000
    assert_status_400(http.post(ISVC, content=deep, headers={"content-type": "application/json"}),
                      "nested too deeply")
    for kind in ("application/merge-patch+json", "application/json-patch+json"):
        assert_status_400(http.patch(f"{ISVC}/x", content=deep, headers={"content-type": kind}), "nested too deeply")
    apply = {"content-type": "application/apply-patch+yaml"}
    assert_status_400(http.patch(f"{ISVC}/x", params={"fieldManager": "t"}, content=deep, headers=apply),
                      "nested more than")
    assert_status_400(http.patch(f"{ISVC}/x", params={"fieldManager": "t"}, content=billion_laughs(9),
                                 headers=apply), "anchor or alias")
