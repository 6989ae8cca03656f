"""What kserve's predict endpoints do for one request, as plain calls: V1 ``POST /v1/models/{name}:predict``
(:class:`V1Predict`) and V2 ``POST /v2/models/{name}/infer`` (:class:`V2Infer`), for the lean route
of :mod:`kfbox.serving.fastpath`.

Each says which requests it reproduces exactly (:meth:`Endpoint.takes` from the headers,
:meth:`Endpoint.parse` returning None from the body) and answers them with kserve's sequence and kserve's
own functions (:meth:`Endpoint.answer`): ``await model(body, headers)`` as kserve's dataplane calls it;
for V2 the body first goes through kserve's ``InferenceRequest`` model (as FastAPI validates it) and
``InferRequest.from_inference_request``, and the answer through ``InferResponse.to_rest()``
(``DataPlane.encode``), kserve's ``InferenceResponse`` model and FastAPI's serialization of it. A plain
answer becomes the JSON body of a 200 with ``ORJSONResponse``'s options; one with headers or binary
outputs becomes the response kserve builds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from fastapi.encoders import jsonable_encoder
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.protocol.dataplane import JSON_HEADERS
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.protocol.rest.v2_datamodels import InferenceRequest, InferenceResponse
from kserve.utils.utils import is_structured_cloudevent
from pydantic import ValidationError
from starlette.types import ASGIApp

JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY  # ORJSONResponse's
Reply = bytes | ASGIApp
"""A prediction's reply: the JSON body of a plain 200, or kserve's own response when the model's is not plain."""


class Endpoint:
    """One of kserve's predict endpoints, for requests with a JSON body and no CloudEvent headers."""

    prefix: ClassVar[str]
    suffix: ClassVar[str]
    first_header_wins: ClassVar[bool]
    """How the endpoint makes the model's headers dict: V1's ``dict(headers.items())`` keeps a repeated
    header's last value, V2's ``dict(headers)`` its first."""

    @staticmethod
    def takes(headers: dict[str, str]) -> bool:
        """Whether kserve would read this request's body as the JSON this endpoint reproduces."""
        raise NotImplementedError

    @staticmethod
    def parse(body: bytes) -> Any:
        """The request kserve's endpoint gets from this body, or None where kserve's answer would differ
        from :meth:`answer`'s (kserve's to answer)."""
        raise NotImplementedError

    @staticmethod
    async def answer(name: str, model: Any, request: Any, headers: dict[str, str]) -> Reply:
        """kserve's reply to ``request`` by the ready ``model`` registered as ``name``."""
        raise NotImplementedError


class V1Predict(Endpoint):
    """``V1Endpoints.predict``: a JSON content type (or none) and a body that is a JSON object and not a
    structured CloudEvent (``application/cloudevents+json`` is answered as a CloudEvent)."""

    prefix, suffix, first_header_wins = "/v1/models/", ":predict", False
    content_types = frozenset(JSON_HEADERS) - {"application/cloudevents+json"}

    @staticmethod
    def takes(headers: dict[str, str]) -> bool:
        return headers.get("content-type", "application/json") in V1Predict.content_types

    @staticmethod
    def parse(body: bytes) -> Any:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return None if not isinstance(payload, dict) or is_structured_cloudevent(payload) else payload

    @staticmethod
    async def answer(name: str, model: Any, request: Any, headers: dict[str, str]) -> Reply:
        response, response_headers = await model(request, headers=headers)
        if response_headers or not isinstance(response, dict):  # not what these models answer: kserve's reply
            return _v1_reply(response, response_headers)
        return orjson.dumps(response, option=JSON_OPTIONS)


class V2Infer(Endpoint):
    """``V2Endpoints.infer`` behind FastAPI: ``content-type: application/json`` (what FastAPI parses as JSON
    and kserve answers without a CloudEvent), no binary tensor extension (``inference-header-content-length``)
    and a body that kserve's ``InferenceRequest`` model accepts (otherwise FastAPI's 422). orjson accepts a
    subset of what FastAPI's ``json.loads`` does, with the same values; what it refuses (NaN, huge integers,
    a BOM) is kserve's to parse. ``/versions/{v}/infer``, which kserve refuses with a 501, is not routed here."""

    prefix, suffix, first_header_wins = "/v2/models/", "/infer", True

    @staticmethod
    def takes(headers: dict[str, str]) -> bool:
        return headers.get("content-type") == "application/json" and INFERENCE_CONTENT_LENGTH_HEADER not in headers

    @staticmethod
    def parse(body: bytes) -> Any:
        try:
            return InferenceRequest.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError):
            return None

    @staticmethod
    async def answer(name: str, model: Any, request: Any, headers: dict[str, str]) -> Reply:
        infer_request = InferRequest.from_inference_request(request, name)
        response, model_headers = await model(infer_request, headers=headers)
        response_headers = dict(model_headers)
        if isinstance(response, InferResponse):  # DataPlane.encode
            response, json_size = response.to_rest()
            if json_size is not None:  # binary outputs asked for in the request's parameters
                response_headers[INFERENCE_CONTENT_LENGTH_HEADER] = str(json_size)
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        if response_headers or isinstance(response, bytes):
            return _v2_reply(response, response_headers)
        return orjson.dumps(jsonable(InferenceResponse.model_validate(response)), option=JSON_OPTIONS)


def jsonable(reply: InferenceResponse) -> Any:
    """FastAPI's ``jsonable_encoder(reply)``, what it serializes a returned model with: ``model_dump(mode="json")``,
    then a pass over the result that copies it but for dict keys starting with ``_sa`` (``sqlalchemy_safe``).
    Only ``parameters`` and ``data`` can hold dicts; where they hold no such key and ``data`` no dict or list, the
    pass would change nothing and is left out (15% of the lean route's CPU for an iris V2 request, measured
    in-process); otherwise it is FastAPI's own."""
    dumped = reply.model_dump(mode="json")
    outputs = dumped["outputs"]
    if (any(key.startswith("_sa") for part in (dumped, *outputs) for key in part["parameters"] or ())
            or any(type(value) in (dict, list) for output in outputs for value in output["data"])):
        return jsonable_encoder(reply)
    return dumped


def _v1_reply(response: Any, headers: dict[str, str]) -> ASGIApp:
    """The reply kserve's V1 predict builds from a model's answer (``V1Endpoints.predict``)."""
    from fastapi.responses import ORJSONResponse
    from starlette.responses import Response

    headers.pop("content-length", None)
    if isinstance(response, (bytes, str)):
        return Response(content=response, headers=headers)
    return ORJSONResponse(content=response, headers=headers)


def _v2_reply(response: Any, headers: dict[str, str]) -> ASGIApp:
    """The reply kserve's V2 infer and FastAPI build from a REST answer with headers or binary outputs
    (``V2Endpoints.infer`` on the sub-response FastAPI hands it, then FastAPI's serialization)."""
    from fastapi.responses import ORJSONResponse
    from starlette.responses import Response

    raw_response = Response()  # as FastAPI's solve_dependencies makes it
    del raw_response.headers["content-length"]
    raw_response.status_code = None  # type: ignore[assignment]
    if headers:
        raw_response.headers.update(headers)
    if isinstance(response, bytes):
        raw_response.status_code = 200
        raw_response.body = response
        return raw_response
    reply = ORJSONResponse(jsonable_encoder(InferenceResponse.model_validate(response)))
    reply.headers.raw.extend(raw_response.headers.raw)
    return reply
