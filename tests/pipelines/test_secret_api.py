"""The secrets/config maps API declares its bodies and replies: they are in /openapi.json, and a body
that does not fit is a 400 naming the field, in-process (no server process needed)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

pytestmark = pytest.mark.inprocess


def test_schemas_are_published(app_client: TestClient) -> None:
    document = app_client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert set(schemas["EntryBody"]["properties"]) == {"data", "merge"}
    assert set(schemas["EntryReply"]["required"]) == {"name", "keys", "created_at", "updated_at"}
    put = document["paths"]["/kfbox/v1/secrets/{name}"]["put"]["responses"]["200"]["content"]["application/json"]
    assert put["schema"] == {"$ref": "#/components/schemas/EntryReply"}
    listed = document["paths"]["/kfbox/v1/configmaps"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"] == {"$ref": "#/components/schemas/ConfigMapList"}


@pytest.mark.parametrize(("body", "field"), [
    ({"data": {"k": 5}}, "data.k"),
    ({"data": {"k": "v"}, "merge": "maybe"}, "merge"),
    ({"datta": {"k": "v"}}, "datta"),
    (["k", "v"], "body"),
])
def test_a_body_that_does_not_fit_is_a_400_naming_the_field(app_client: TestClient, body: object,
                                                             field: str) -> None:
    reply = app_client.put("/kfbox/v1/configmaps/settings", json=body)
    assert reply.status_code == 400, reply.text
    assert field in reply.json()["message"]
    assert app_client.get("/kfbox/v1/configmaps/settings").status_code == 404  # nothing was stored


def test_replies_have_the_declared_shape(app_client: TestClient) -> None:
    made = app_client.put("/kfbox/v1/configmaps/shape", json={"data": {"b": "2", "a": "1"}})
    assert made.status_code == 200 and set(made.json()) == {"name", "keys", "created_at", "updated_at"}
    assert made.json()["keys"] == ["a", "b"]
    one = app_client.get("/kfbox/v1/configmaps/shape").json()
    assert one["data"] == {"a": "1", "b": "2"}
    assert [e["name"] for e in app_client.get("/kfbox/v1/configmaps").json()["configmaps"]] == ["shape"]
    secret = app_client.put("/kfbox/v1/secrets/shape", json={"data": {"password": "s3cret"}})
    assert "data" not in secret.json() and "s3cret" not in app_client.get("/kfbox/v1/secrets/shape").text
    assert app_client.delete("/kfbox/v1/configmaps/shape").json() == {}
