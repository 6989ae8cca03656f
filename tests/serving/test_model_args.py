"""The kserve ModelServer's ``--model_name`` in ``spec.predictor.model.args`` (as KServe's own e2e tests set it):
the model answers under that name, by path, by Host and through the gRPC gateway (a container port named
``h2c`` turns gRPC on, as in those tests), and a change of name is a new revision. Any other server argument
is refused naming it, since kfbox runs the ModelServer itself."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kfbox.client import ApiClient
from kfbox.loadtest.target import resolve_target
from tests.serving.helpers import (
    API,
    ROWS,
    SharedServer,
    apply,
    expected,
    kfbox,
    manifest,
    status,
    train_iris,
    wait_for,
    wait_ready,
)
from tests.support import ServerProcess

ISVC = API.format(ns="default")
GRPC_PORT = 0


@pytest.fixture(scope="module", autouse=True)
def _grpc_port(shared_server: SharedServer) -> None:
    """The gRPC gateway's port of the serving package's shared ``kfbox up`` (tests/serving/conftest.py)."""
    global GRPC_PORT
    GRPC_PORT = shared_server.grpc_port


async def grpc_predict(model: str) -> list[int]:
    """A V2 gRPC ModelInfer through the gateway port, as kserve's e2e predict_grpc sends it."""
    import numpy as np
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    client = InferenceGRPCClient(url=f"127.0.0.1:{GRPC_PORT}")
    tensor = InferInput(name="input-0", shape=[len(ROWS), 4], datatype="FP32")
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float32))
    try:
        reply = await client.infer(InferRequest(model_name=model, infer_inputs=[tensor]))
    finally:
        await client.close()
    return [int(v) for v in reply.outputs[0].as_numpy().tolist()]


def with_args(name: str, args: Any, uri: str = "pvc://models/iris") -> dict[str, Any]:
    body = manifest(name, uri)
    body["spec"]["predictor"]["model"]["args"] = args
    return body


@pytest.mark.parametrize(("args", "message"), [
    (["--workers=2"], "'--workers=2' is not supported here"),
    (["--model_name", "flower", "--http_port", "9000"], "'--http_port' is not supported here"),
    (["--model_name"], "--model_name needs a value"),
    (["--model_name", "../admin"], "'../admin' must be letters"),
    ("--model_name flower", "must be a list of strings"),
])
def test_other_server_arguments_get_422_naming_them(app_client: TestClient, args: Any, message: str) -> None:
    reply = app_client.post(ISVC, json=with_args("argued", args))
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["reason"] == "Invalid" and message in body["message"], body
    assert body["details"]["causes"][0]["field"] == "spec.predictor.model.args"
    assert app_client.get(f"{ISVC}/argued").status_code == 404  # nothing stored


def test_shorthand_format_takes_model_name_too(app_client: TestClient) -> None:
    body = manifest("short", None)
    body["spec"]["predictor"] = {"sklearn": {"storageUri": "pvc://models/iris", "args": ["--model_name=x"]}}
    assert app_client.post(ISVC, params={"dryRun": "All"}, json=body).status_code == 201
    body["spec"]["predictor"]["sklearn"]["args"] = ["--workers=2"]
    reply = app_client.post(ISVC, params={"dryRun": "All"}, json=body)
    assert reply.status_code == 422 and reply.json()["details"]["causes"][0]["field"] == "spec.predictor.sklearn.args"


def test_model_is_served_under_model_name(server: ServerProcess) -> None:
    model = train_iris(server.home / "pvc" / "models" / "iris")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        body = with_args("named", ["--model_name", "flower"])
        body["spec"]["predictor"]["model"]["ports"] = [{"containerPort": 8081, "name": "h2c", "protocol": "TCP"}]
        apply(client, body)
        wait_ready(client, "named")
        by_path = client.post("/serving/default/named/v1/models/flower:predict", json={"instances": ROWS})
        assert by_path.status_code == 200, by_path.text
        assert by_path.json()["predictions"] == expected(model)
        by_host = client.post("/v2/models/flower/infer", headers={"Host": "named.default.example.com"},
                              json={"inputs": [{"name": "input-0", "shape": [len(ROWS), 4], "datatype": "FP32",
                                                "data": ROWS}]})
        assert by_host.status_code == 200, by_host.text
        assert by_host.json()["model_name"] == "flower"
        assert by_host.json()["outputs"][0]["data"] == expected(model)
        assert asyncio.run(grpc_predict("flower")) == expected(model)
        # kfbox's own clients follow the name: `kfbox predict` and `kfbox loadtest NAME`
        predicted = kfbox("predict", "named", "--data", json.dumps(ROWS), url=server.url)
        assert predicted.returncode == 0, predicted.stderr
        assert json.loads(predicted.stdout)["predictions"] == expected(model)
        target = resolve_target("named", api=ApiClient(server.url), v2=True)
        assert target.url == f"{server.url}/serving/default/named/v2/models/flower/infer"
        page = client.get("/deployments/default/named.json")  # the dashboard's code snippets
        assert page.status_code == 200 and "/v1/models/flower:predict" in json.dumps(page.json()["snippets"])
        # the InferenceService's own name is not a model on that server
        assert client.post("/serving/default/named/v1/models/named:predict",
                           json={"instances": ROWS}).status_code == 404

        first = status(client, "named")["components"]["predictor"]["latestCreatedRevision"]
        apply(client, with_args("named", ["--model_name=petal"]))
        assert status(client, "named")["components"]["predictor"]["latestCreatedRevision"] != first
        wait_for(lambda: client.post("/serving/default/named/v1/models/petal:predict",
                                     json={"instances": ROWS}).status_code == 200, 90, "the renamed model")
        assert client.delete(f"{ISVC}/named").status_code == 200
