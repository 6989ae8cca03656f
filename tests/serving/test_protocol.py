"""Inference protocol details side by side: kfbox's gateway and a stock KServe sklearn server
(``tests.serving.stock_sklearn``: upstream sklearnserver's logic on the installed
``kserve.ModelServer``) serve the same mixed-type model (a pandas Pipeline, as kserve's e2e
``test_sklearn_v2_mixed``) and must answer alike — except that every gateway error uses KServe's
``{"error": ...}`` body where FastAPI's ``{"detail": ...}`` would show through. The same service
answers kserve's ``InferenceGRPCClient`` through the gRPC gateway port (``KFBOX_SERVING_GRPC_PORT``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serving.helpers import SharedServer, apply, manifest, wait_ready
from tests.support import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
NAME = "mixed"
CATEGORIES = {"MSZoning": ["RL", "RM"], "LotShape": ["Reg", "IR1"], "Neighborhood": ["CollgCr", "Veenker"]}
NUMBERS = ["LotArea", "YrSold", "GarageArea"]
ROW = {"MSZoning": "RL", "LotArea": 8450, "LotShape": "Reg", "YrSold": 2008, "Neighborhood": "CollgCr",
       "GarageArea": 548}
MIXED_V2 = {"parameters": {"content_type": "pd"}, "inputs": [
    {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "INT32", "data": [v]}
    for k, v in ROW.items()]}


# numpy, pandas and sklearn are imported where used: every pytest worker imports this module, one runs it.
def train_mixed(folder: Path) -> Any:
    import joblib
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({**{c: rng.choice(v, 200) for c, v in CATEGORIES.items()},
                          **{c: rng.integers(1, 3000, 200) for c in NUMBERS}})
    model = Pipeline([("encode", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"),
                                                     list(CATEGORIES))], remainder="passthrough")),
                      ("regress", LinearRegression())])
    model.fit(frame, np.log1p(frame["LotArea"] * 10 + frame["GarageArea"]))
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    return model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


GRPC_PORT = 0


@pytest.fixture(scope="module", autouse=True)
def _grpc_port(shared_server: SharedServer) -> None:
    """The gRPC gateway's port of the serving package's shared ``kfbox up`` (tests/serving/conftest.py)."""
    global GRPC_PORT
    GRPC_PORT = shared_server.grpc_port


@pytest.fixture(scope="module")
def servers(server: ServerProcess) -> Iterator[tuple[httpx.Client, httpx.Client, Any]]:
    """(kfbox gateway, stock server, model): the same model file behind both."""
    folder = server.home / "pvc" / "models" / NAME
    model = train_mixed(folder)
    port = free_port()
    stock = subprocess.Popen([sys.executable, "-m", "tests.serving.stock_sklearn", str(folder), NAME, str(port)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with server.client() as kfbox:
        apply(kfbox, manifest(NAME, f"pvc://models/{NAME}", annotations={"serving.kfbox.io/enable-grpc": "true"}))
        wait_ready(kfbox, NAME)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as upstream:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if upstream.get(f"/v2/models/{NAME}/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            gateway = httpx.Client(base_url=f"{server.url}/serving/default/{NAME}", timeout=30)
            yield gateway, upstream, model
            gateway.close()
    stock.kill()  # its graceful stop waits seconds for nothing
    stock.wait(10)


def both(servers: tuple[httpx.Client, httpx.Client, Any], method: str, path: str,
         **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
    gateway, upstream, _ = servers
    return gateway.request(method, path, **kwargs), upstream.request(method, path, **kwargs)


def test_v2_mixed_datatypes_as_a_dataframe(servers: tuple[httpx.Client, httpx.Client, Any]) -> None:
    import pandas as pd

    ours, stock = both(servers, "POST", f"/v2/models/{NAME}/infer", json=MIXED_V2)
    assert (ours.status_code, stock.status_code) == (200, 200), ours.text
    want = servers[2].predict(pd.DataFrame([ROW]))
    assert ours.json()["outputs"] == stock.json()["outputs"]
    assert ours.json()["outputs"][0]["data"] == pytest.approx(list(want))


@pytest.mark.parametrize(("method", "path", "body", "code"), [
    pytest.param("GET", f"/v2/models/{NAME}/infer", None, 405, id="405-wrong-method"),
    pytest.param("POST", f"/v2/models/{NAME}/infer", {"inputs": 5}, 422, id="422-not-a-v2-request"),
    pytest.param("POST", f"/v1/models/{NAME}:predict", b"{not json", 400, id="400-bad-json"),
    pytest.param("GET", "/v2/models/nope/ready", None, 404, id="404-unknown-model"),
])
def test_errors_match_stock_status_and_use_one_body_form(servers: tuple[httpx.Client, httpx.Client, Any],
                                                          method: str, path: str, body: Any, code: int) -> None:
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body} if body else {}
    ours, stock = both(servers, method, path, **kwargs)
    assert ours.status_code == stock.status_code == code, ours.text
    assert ours.headers.get_list("content-type") == ["application/json"]  # once, not twice
    assert set(ours.json()) == {"error"} and ours.json()["error"]
    assert ours.headers.get("allow") == stock.headers.get("allow")
    if "error" in stock.json():  # the replica's own KServe errors pass through unchanged
        assert ours.json() == stock.json()


def test_gateway_own_errors_have_the_same_form(servers: tuple[httpx.Client, httpx.Client, Any],
                                               server: ServerProcess) -> None:
    missing = httpx.post(f"{server.url}/serving/default/absent/v2/models/absent/infer", json=MIXED_V2)
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    assert missing.headers.get_list("content-type") == ["application/json"]


def grpc_inputs() -> list[Any]:
    """Typed ``contents`` per column, as kserve's e2e test_sklearn_v2_mixed_grpc sends them (raw contents of
    mixed types fail on a stock server too: it reads them as an empty frame)."""
    from kserve import InferInput

    return [InferInput(key, [1], "BYTES" if isinstance(value, str) else "INT32", data=[value])
            for key, value in ROW.items()]


def test_grpc_through_the_gateway_port(servers: tuple[httpx.Client, httpx.Client, Any]) -> None:
    """kserve's InferenceGRPCClient against kfbox's gRPC port: routed by model name (and namespace metadata)."""
    import asyncio

    import grpc
    import pandas as pd
    from kserve import InferenceGRPCClient, InferRequest

    async def calls() -> None:
        client = InferenceGRPCClient(f"127.0.0.1:{GRPC_PORT}", timeout=60)
        assert await client.is_server_live() and await client.is_model_ready(NAME)
        reply = await client.infer(InferRequest(model_name=NAME, infer_inputs=grpc_inputs(),
                                                parameters={"content_type": "pd"}))
        want = servers[2].predict(pd.DataFrame([ROW]))
        assert list(reply.outputs[0].as_numpy()) == pytest.approx(list(want))
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await client.infer(InferRequest(model_name="absent", infer_inputs=grpc_inputs()))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert await client.is_model_ready(NAME, headers=[("x-kfbox-namespace", "default")])
        with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
            await client.is_model_ready(NAME, headers=[("x-kfbox-namespace", "other")])
        assert elsewhere.value.code() == grpc.StatusCode.NOT_FOUND
        await client.close()

    asyncio.run(calls())
