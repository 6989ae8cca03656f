"""The replica's fast path (V1 predict, V2 infer) answers exactly as kserve's own app: the same requests go to kserve's
REST app (built by kserve's ``RESTServer``, in-process through ``httpx.ASGITransport``) and to
:class:`kfbox.serving.fastpath.FastPredict` wrapped around it, for the same registered models, and
status, headers and body must be byte-identical. A second wrapper, around an app that only says it
was reached, shows which requests the fast path answered itself and which it handed to kserve."""

from __future__ import annotations

import asyncio
import json
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from kfbox.serving.replica import without_timing_middleware

# kserve, sklearn and the kfbox modules that import kserve are imported where used: every pytest worker
# imports this module, one runs it.
if TYPE_CHECKING:
    from kserve.model_repository import ModelRepository

    from kfbox.serving.runtimes import TabularModel

JSON = {"content-type": "application/json"}
UNIQUE = re.compile(rb"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|\d{4}-\d\d-\d\dT[\d:.]+\+00:00")
ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
FLAT = [x for row in ROWS for x in row]


def kserve_app() -> Any:
    """kserve's REST app: what RESTServer builds on, as in a replica."""
    from kserve.model_server import app

    return app


def fast_path(app: Any, models: ModelRepository) -> Any:
    """kfbox's fast path around ``app``."""
    from kfbox.serving.fastpath import FastPredict

    return FastPredict(app, models)


def _echo(name: str) -> Any:
    from kserve import Model

    class Echo(Model):  # type: ignore[misc]  # kserve ships no types
        """A user's own model: pre- and postprocess of its own, so it must keep kserve's path."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.ready = True

        def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            return {"instances": [[len(payload.get("instances", []))]]}

        def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
            return {"predictions": payload["instances"]}

    return Echo(name)


def _served(folder: Path, name: str, model: Any) -> TabularModel:
    import joblib

    from kfbox.serving.runtimes import TabularModel

    (folder / name).mkdir()
    joblib.dump(model, folder / name / "model.joblib")
    served = TabularModel(name, folder / name, "sklearn")
    served.load()
    return served


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    import numpy as np
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from kfbox.serving.runtimes import TabularModel

    folder = tmp_path_factory.mktemp("models")
    features, labels = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[labels]
    repository = ModelRepository()
    for model in (
        _served(folder, "iris", KNeighborsClassifier(n_neighbors=3).fit(features, labels)),
        _served(folder, "names", Pipeline([("scale", StandardScaler()),
                                           ("knn", KNeighborsClassifier(n_neighbors=4))]).fit(features, names)),
        _served(folder, "width", LinearRegression().fit(features[:, :3], features[:, 3])),
        _echo("custom"),
    ):
        repository.update(model)
    broken = TabularModel("broken", folder, "sklearn")
    broken._predict = lambda rows: 1 / 0  # a model whose predict fails in its own way
    broken.ready = True
    repository.update(broken)
    repository.update(TabularModel("sleepy", folder, "sklearn"))  # registered, not loaded: not ready
    server = RESTServer("kserve.model_server:app", DataPlane(model_registry=repository),
                        ModelRepositoryExtension(model_registry=repository), http_port=0)
    without_timing_middleware(server)  # as the replica builds it
    server.create_application()
    return repository


class Reached:
    """Stands in for kserve's app (its settings are kserve's app's) and says that the request was handed on."""

    def __getattr__(self, name: str) -> Any:
        return getattr(kserve_app(), name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"handed to kserve"})


def call(app: Any, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, list[Any], bytes]:
    """(status, headers, body) of one request to an ASGI app; an exception after the reply is the server's to log."""
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://replica") as client:
            return await client.request(method, path, content=body, headers=headers)

    reply = asyncio.run(send())
    return reply.status_code, [(k, _unique(v.encode())) for k, v in reply.headers.multi_items()], _unique(reply.content)


def _unique(text: bytes) -> bytes:
    """Ids and times kserve makes up per reply (V2 ``id``, CloudEvent ``id`` and ``time``), blanked."""
    return UNIQUE.sub(b"<>", text)


def v1(body: Any, name: str = "iris", headers: dict[str, str] = JSON) -> tuple[str, str, bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return "POST", f"/v1/models/{name}:predict", raw, headers


def v2(body: Any, name: str = "iris", headers: dict[str, str] = JSON, path: str = "/v2/models/{name}/infer"
       ) -> tuple[str, str, bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return "POST", path.format(name=name), raw, headers


def tensor(rows: list[list[Any]], datatype: str = "FP64", **fields: Any) -> dict[str, Any]:
    """A V2 request with ``rows`` as one ``[n, 4]`` input tensor (flattened, row-major)."""
    return {"inputs": [{"name": "input-0", "shape": [len(rows), len(rows[0])], "datatype": datatype,
                        "data": [x for row in rows for x in row]}], **fields}


INTS = [[5, 3, 1, 0], [6, 3, 5, 2]]
BINARY_HEAD = json.dumps({"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                                      "parameters": {"binary_data_size": 64}}]}).encode()


# (request, answered by the fast path itself)
CASES = {
    "two rows": (v1({"instances": ROWS}), True),
    "inputs instead of instances": (v1({"inputs": ROWS}), True),
    "integer features": (v1({"instances": [[5, 3, 1, 0]]}), True),
    "extra keys": (v1({"instances": ROWS, "parameters": {"x": "é"}}), True),
    "no content type": (v1({"instances": ROWS}, headers={}), True),
    "octet-stream": (v1({"instances": ROWS}, headers={"content-type": "application/octet-stream"}), True),
    "string classes through a pipeline": (v1({"instances": ROWS}, "names"), True),
    "float predictions": (v1({"instances": [[5.1, 3.5, 1.4], [1e300, -0.0, 3]]}, "width"), True),
    "empty instances": (v1({"instances": []}), True),
    "no instances": (v1({"rows": ROWS}), True),
    "instances not a list": (v1({"instances": 5}), True),
    "three features for four": (v1({"instances": [[6.8, 2.8, 4.8]]}), True),
    "strings as features": (v1({"instances": [["a", "b", "c", "d"]]}), True),
    "a 3-D batch": (v1({"instances": [ROWS]}), True),
    "predict fails": (v1({"instances": ROWS}, "broken"), True),
    "bad JSON": (v1(b'{"instances": [[6.8, 2.8'), False),
    "NaN is not JSON": (v1(b'{"instances": [[NaN, 1, 2, 3]]}'), False),
    "a JSON list": (v1([[6.8, 2.8, 4.8, 1.4]]), False),
    "unknown model": (v1({"instances": ROWS}, "nope"), False),
    "model not ready": (v1({"instances": ROWS}, "sleepy"), False),
    "custom model": (v1({"instances": ROWS}, "custom"), False),
    "text/plain": (v1({"instances": ROWS}, headers={"content-type": "text/plain"}), False),
    "cloudevents+json": (v1({"instances": ROWS}, headers={"content-type": "application/cloudevents+json"}), False),
    "binary CloudEvent": (v1({"instances": ROWS}, headers={"ce-specversion": "1.0", "ce-source": "t", "ce-type": "t",
                                                           "ce-id": "1", **JSON}), False),
    "structured CloudEvent": (v1({"specversion": "1.0", "id": "1", "source": "t", "type": "t", "time": "now",
                                  "data": {"instances": ROWS}}), False),
    "V2 FP64": (v2(tensor(ROWS)), True),
    "V2 FP32": (v2(tensor(ROWS, "FP32")), True),
    "V2 INT64": (v2(tensor(INTS, "INT64")), True),
    "V2 with an id": (v2(tensor(ROWS, id="req-1")), True),
    "V2 with parameters": (v2(tensor(ROWS, parameters={"note": "é", "n": 3, "on": True, "x": 0.5})), True),
    "V2 input parameters": (v2({"inputs": [{**tensor(ROWS)["inputs"][0], "parameters": {"content_type": "np"}}]}),
                            True),
    "V2 columns as a DataFrame": (v2({"parameters": {"content_type": "pd"}, "inputs": [
        {"name": f"c{i}", "shape": [2], "datatype": "FP64", "data": [row[i] for row in ROWS]} for i in range(4)]}),
                                  True),
    "V2 requested output": (v2(tensor(ROWS, outputs=[{"name": "output-0"}])), True),
    "V2 unknown requested output": (v2(tensor(ROWS, outputs=[{"name": "probabilities"}])), True),
    "V2 binary outputs asked for": (v2(tensor(ROWS, parameters={"binary_data_output": True})), True),
    "V2 one binary output asked for": (v2(tensor(ROWS, outputs=[{"name": "output-0",
                                                                "parameters": {"binary_data": True}}])), True),
    "V2 shape as strings": (v2({"inputs": [{**tensor(ROWS)["inputs"][0], "shape": ["2", "4"]}]}), True),
    "V2 string classes": (v2(tensor(ROWS), "names"), True),
    "V2 float predictions": (v2(tensor([[5.1, 3.5, 1.4], [1e300, -0.0, 3]]), "width"), True),
    "V2 bad datatype": (v2(tensor(ROWS, "FP99")), True),
    "V2 FP16 as JSON": (v2(tensor(ROWS, "FP16")), True),
    "V2 strings as features": (v2(tensor([["a", "b", "c", "d"]], "BYTES")), True),
    "V2 shape and data disagree": (v2({"inputs": [{**tensor(ROWS)["inputs"][0], "shape": [3, 4]}]}), True),
    "V2 three features for four": (v2(tensor([[6.8, 2.8, 4.8]])), True),
    "V2 predict fails": (v2(tensor(ROWS), "broken"), True),
    "V2 malformed JSON": (v2(b'{"inputs": [{"name": "input-0"'), False),
    "V2 NaN is not JSON": (v2(b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", '
                              b'"data": [NaN, 1, 2, 3]}]}'), False),
    "V2 a JSON list": (v2([tensor(ROWS)]), False),
    "V2 no inputs": (v2({"id": "1"}), False),
    "V2 id not a string": (v2(tensor(ROWS, id=7)), False),
    "V2 unknown model": (v2(tensor(ROWS), "nope"), False),
    "V2 model not ready": (v2(tensor(ROWS), "sleepy"), False),
    "V2 custom model": (v2(tensor(ROWS), "custom"), False),
    "V2 versioned path": (v2(tensor(ROWS), path="/v2/models/{name}/versions/1/infer"), False),
    "V2 trailing slash": (v2(tensor(ROWS), path="/v2/models/{name}/infer/"), False),
    "V2 binary tensor extension": (v2(BINARY_HEAD + struct.pack("<8d", *FLAT), headers={
        "content-type": "application/octet-stream", "inference-header-content-length": str(len(BINARY_HEAD))}), False),
    "V2 JSON with the binary header": (v2(tensor(ROWS), headers={**JSON, "inference-header-content-length": "0"}),
                                       False),
    "V2 no content type": (v2(tensor(ROWS), headers={}), False),
    "V2 JSON with a charset": (v2(tensor(ROWS), headers={"content-type": "application/json; charset=utf-8"}), False),
    "V2 cloudevents+json": (v2(tensor(ROWS), headers={"content-type": "application/cloudevents+json"}), False),
    "V2 binary CloudEvent": (v2(tensor(ROWS), headers={"ce-specversion": "1.0", "ce-source": "t", "ce-type": "t",
                                                       "ce-id": "1", **JSON}), False),
    "V2 GET on infer": (("GET", "/v2/models/iris/infer", None, {}), False),
    "V2 model metadata": (("GET", "/v2/models/iris", None, {}), False),
    "explain": (("POST", "/v1/models/iris:explain", json.dumps({"instances": ROWS}).encode(), JSON), False),
    "GET on predict": (("GET", "/v1/models/iris:predict", None, {}), False),
    "model status": (("GET", "/v1/models/iris", None, {}), False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_reply_as_kserve(models: ModelRepository, case: str) -> None:
    (method, path, body, headers), _ = CASES[case]
    stock = call(kserve_app(), method, path, body, headers)
    fast = call(fast_path(kserve_app(), models), method, path, body, headers)
    assert fast == stock


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_answers_only_what_it_knows(models: ModelRepository, case: str) -> None:
    (method, path, body, headers), answered_here = CASES[case]
    status, _, content = call(fast_path(Reached(), models), method, path, body, headers)
    assert (content != b"handed to kserve") is answered_here
    assert status == 299 or answered_here


def test_good_requests_predict_what_the_model_does(models: ModelRepository) -> None:
    """Not only alike but right: the predictions are the model's own."""
    status, _, content = call(fast_path(Reached(), models), *v1({"instances": ROWS}, "names"))
    assert status == 200
    assert json.loads(content) == {"predictions": ["versicolor", "versicolor"]}


def test_good_v2_requests_infer_what_the_model_predicts(models: ModelRepository) -> None:
    """V2 on the fast path: the model's predictions as kserve's output tensor, for each input datatype."""
    _, _, content = call(fast_path(Reached(), models), *v1({"instances": ROWS}))
    want = json.loads(content)["predictions"]
    for datatype in ("FP64", "FP32"):
        status, _, content = call(fast_path(Reached(), models), *v2(tensor(ROWS, datatype, id="42")))
        assert status == 200
        assert json.loads(content) == {"model_name": "iris", "model_version": None, "id": "42", "parameters": None,
                                       "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT64",
                                                    "parameters": None, "data": want}]}
    status, _, content = call(fast_path(Reached(), models), *v2(tensor(INTS, "INT64")))
    assert status == 200
    assert json.loads(content)["outputs"][0]["data"] == json.loads(call(
        kserve_app(), *v1({"instances": INTS}))[2])["predictions"]
    status, _, content = call(fast_path(Reached(), models), *v2(tensor(ROWS), "names"))
    assert status == 200, content  # class names: a BYTES tensor of strings (kserve alone answers a 500)
    assert json.loads(content)["outputs"] == [{"name": "output-0", "shape": [2], "datatype": "BYTES",
                                               "parameters": None, "data": ["versicolor", "versicolor"]}]


def _reply(data: list[Any], parameters: dict[str, Any] | None = None,
           output_parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"model_name": "iris", "id": "1", "parameters": parameters, "outputs": [
        {"name": "output-0", "shape": [len(data)], "datatype": "FP64", "parameters": output_parameters, "data": data}]}


REPLIES = {
    "integers": _reply([1, 0, 2]),
    "floats": _reply([0.1, 1e300, -0.0, 2.5e-308]),
    "strings, booleans, none": _reply(["é", True, None]),
    "parameters": _reply([1], {"content_type": "np", "n": 3}, {"x": 0.5, "on": False}),
    "an _sa parameter": _reply([1], {"_sa_state": "x", "kept": 1}),
    "an _sa output parameter": _reply([1], None, {"_sa": True}),
    "nested data": _reply([[1, 2], [3, 4]]),
    "dicts in data": _reply([{"_sa_x": 1, "y": 2}, {"z": [1, {"_sa": 3}]}]),
}


@pytest.mark.parametrize("reply", list(REPLIES))
def test_v2_replies_are_encoded_as_fastapi_does(reply: str) -> None:
    """The lean route's encoding of kserve's InferenceResponse is FastAPI's jsonable_encoder's, to the byte,
    including its quirk of dropping dict keys that start with ``_sa`` (which no kfbox runtime answers with)."""
    import orjson
    from fastapi.encoders import jsonable_encoder
    from kserve.protocol.rest.v2_datamodels import InferenceResponse

    from kfbox.serving.kserve_endpoints import jsonable

    model = InferenceResponse.model_validate(REPLIES[reply])
    assert orjson.dumps(jsonable(model)) == orjson.dumps(jsonable_encoder(model))


@pytest.mark.parametrize("request_", [v1({"instances": ROWS}, "broken"), v2(tensor(ROWS), "broken")],
                         ids=["V1", "V2"])
def test_a_failing_predict_reaches_the_server_as_with_kserve(models: ModelRepository,
                                                             request_: tuple[str, str, bytes, dict[str, str]]) -> None:
    """After the 500, kserve's app re-raises the model's error (uvicorn logs it and closes the connection)."""
    method, path, body, headers = request_

    async def send(app: Any) -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replica") as client:
            await client.request(method, path, content=body, headers=headers)

    for app in (kserve_app(), fast_path(kserve_app(), models)):
        with pytest.raises(ZeroDivisionError):
            asyncio.run(send(app))


@pytest.mark.parametrize("setting", ["middleware", "body limit", "root path", "telemetry"])
def test_steps_aside_while_kserve_app_does_more(models: ModelRepository, setting: str) -> None:
    """Whatever kserve's app does around its routes (a future kserve's middleware, a body size limit,
    FastAPI's OpenTelemetry with a provider) would be skipped by the fast path: every request is kserve's."""
    from starlette.middleware import Middleware
    from timing_asgi import TimingMiddleware

    app = kserve_app()
    telemetry = app._native_telemetry.config
    saved = (list(app.user_middleware), app.max_body_size, app.root_path, dict(telemetry))
    if setting == "middleware":
        app.user_middleware.append(Middleware(TimingMiddleware, client=None, metric_namer=None))
    elif setting == "body limit":
        app.max_body_size = 1 << 20
    elif setting == "root path":
        app.root_path = "/replica"
    else:
        telemetry["tracer_provider"] = object()
    try:
        status, _, content = call(fast_path(Reached(), models), *v1({"instances": ROWS}))
    finally:
        app.user_middleware[:], app.max_body_size, app.root_path = saved[:3]
        telemetry.update(saved[3])
    assert (status, content) == (299, b"handed to kserve")
