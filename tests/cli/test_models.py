"""``kfbox models list|show`` against a real server holding models registered through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from typer.testing import CliRunner

from kfbox.cli.main import app
from tests.support import ServerProcess

V1 = "/api/model_registry/v1"


@pytest.fixture(scope="module")
def registered(server: ServerProcess) -> ServerProcess:
    with server.client() as http:
        model = http.post(f"{V1}/registered_models", json={"name": "iris", "owner": "alice",
                                                           "description": "Iris KNN"}).json()
        for name, accuracy in (("v1", 0.91), ("v2", 29 / 30)):
            version = http.post(f"{V1}/model_versions", json={
                "name": name, "registeredModelId": model["id"], "author": "alice",
                "customProperties": {"accuracy": {"metadataType": "MetadataDoubleValue", "double_value": accuracy},
                                     "epochs": {"metadataType": "MetadataIntValue", "int_value": "5"}}}).json()
            reply = http.post(f"{V1}/model_versions/{version['id']}/artifacts", json={
                "artifactType": "model-artifact", "name": "iris", "uri": f"s3://models/iris/{name}",
                "modelFormatName": "sklearn", "modelFormatVersion": "1"})
            assert reply.status_code == 201
        http.post(f"{V1}/registered_models", json={"name": "empty"})
    return server


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_models_list(registered: ServerProcess) -> None:
    rows = json.loads(invoke("models", "list", "--url", registered.url, "--output", "json"))
    by_name = {row["name"]: row for row in rows}
    assert by_name["iris"]["latest_version"] == "v2" and by_name["iris"]["owner"] == "alice"
    assert by_name["empty"]["latest_version"] is None
    table = invoke("models", "list", "--url", registered.url)
    assert "iris" in table and "v2" in table and "LATEST VERSION" in table


def test_models_show(registered: ServerProcess) -> None:
    shown = json.loads(invoke("models", "show", "iris", "--url", registered.url, "-o", "json"))
    assert [v["name"] for v in shown["versions"]] == ["v1", "v2"]
    assert shown["versions"][1]["properties"] == {"accuracy": 29 / 30, "epochs": 5}  # every digit in JSON
    assert shown["versions"][0]["artifacts"][0]["uri"] == "s3://models/iris/v1"
    one = json.loads(invoke("models", "show", "iris", "--version", "v2", "--url", registered.url, "-o", "json"))
    assert [v["name"] for v in one["versions"]] == ["v2"]
    table = invoke("models", "show", "iris", "--url", registered.url)
    assert "accuracy=0.9667" in table and "s3://models/iris/v2" in table and "sklearn 1" in table
    assert "0.96666" not in table  # a table is read by people: four significant digits


def test_helpful_errors(registered: ServerProcess) -> None:
    def kfbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kfbox", *args, "--url", registered.url],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "COLUMNS": "300"})

    missing = kfbox("models", "show", "x")
    assert missing.returncode == 1
    assert "Model 'x' not found. List models with: kfbox models list" in missing.stderr
    no_version = kfbox("models", "show", "iris", "--version", "v9")
    assert no_version.returncode == 1
    assert "Model 'iris' has no version 'v9'. List versions with: kfbox models show iris" in no_version.stderr
    assert httpx.get(f"{registered.url}/healthz").status_code == 200
