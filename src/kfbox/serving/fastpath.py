"""A lean route for kserve's predict endpoints in front of a replica's kserve app: V1
``POST /v1/models/{name}:predict`` and V2 (Open Inference Protocol) ``POST /v2/models/{name}/infer``.

kserve answers a prediction through FastAPI (routing, a ``Request``, dependency resolution and, for V2,
validating the body into its ``InferenceRequest`` model), its ``DataPlane`` (readiness, CloudEvent
decoding and encoding) and ``ORJSONResponse``; for an iris KNN that is about as much CPU as the
prediction itself. :class:`FastPredict` is a plain ASGI app wrapped around kserve's: for the request
shapes it knows it does what those layers do for them, and hands every other request to kserve
unchanged. It steps aside altogether while kserve's app does anything around its routes that it would
bypass: a middleware (the replica removes kserve's only one, ``timing_asgi``), a body size limit, a root
path, FastAPI's OpenTelemetry once a provider is set up.

It takes a request only when all of these hold, and otherwise passes it on untouched (the body it has
read is replayed): the method is POST and the path one of the two above (not V2's
``/versions/{v}/infer``, which kserve refuses with a 501); the model registered under that name is ready
and of a class in :data:`PURE_MODELS` (kfbox's own runtimes, whose preprocess and postprocess are
kserve's identity; a user's ``Model`` subclass or the Hugging Face runtime goes through kserve); the
request has no CloudEvent headers and its body parses as a JSON object. V1 also wants a JSON content type
(or none) and a body that is not a structured CloudEvent; V2 wants ``content-type: application/json``,
no binary tensor extension (``inference-header-content-length``) and a body that kserve's
``InferenceRequest`` model accepts. Anything kserve would answer differently (an unknown or unready
model, bad JSON, a body its V2 model refuses with a 422, explain, ``/metrics``) is kserve's to answer.

What it then does is kserve's own sequence (:mod:`kfbox.serving.kserve_endpoints`): the model is called as
kserve's dataplane calls it (``await model(body, headers)``: preprocess, predict, postprocess and the
Prometheus histograms, on the event loop's thread), V2 bodies and answers go through kserve's own
``InferRequest``/``InferResponse`` conversions and models, the reply is ``orjson`` with ``ORJSONResponse``'s
options, and an error raised on the way goes through the exception handler kserve's app registered for it,
so status, headers and body are kserve's (``tests/serving/test_fastpath.py`` compares both paths byte for
byte).

Since the replies are the same, the one sign of which route answered is a counter on the replica's
``/metrics`` (kserve's own endpoint, which kfbox's Prometheus scrapes as job ``kfbox-replica``):
``kfbox_replica_fast_predictions_total{model_name}`` counts the requests this route answered, V1 and V2
alike, beside kserve's ``request_predict_seconds_count{model_name}``, which counts every prediction on
either route and protocol (``tests/serving/test_gateway.py`` checks a real replica with both). It has no
protocol label: the pair answers "how much of this model's traffic took the lean route", and the gateway's
request metrics already split traffic by path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from kfbox.serving.kserve_endpoints import Endpoint, V1Predict, V2Infer
from kfbox.serving.runtimes import TabularModel

ENDPOINTS: tuple[type[Endpoint], ...] = (V1Predict, V2Infer)
PURE_MODELS: tuple[type, ...] = (TabularModel,)
"""Model classes whose ``__call__`` is kserve's with identity preprocess/postprocess (exact classes)."""
SERVER_ERRORS = (Exception, 500)  # keys Starlette's ServerErrorMiddleware handles (and then re-raises)
ANSWERED: Counter[str] = Counter()
"""Model name -> predict requests (V1 and V2) this route answered; exported by :class:`AnsweredCollector`."""


class FastPredict:
    """kserve's REST app with V1 predict and V2 infer for :data:`PURE_MODELS` answered in front of it."""

    def __init__(self, app: Any, models: Any) -> None:
        """``app``: kserve's FastAPI app; ``models``: the ``ModelRepository`` its dataplane serves."""
        self.app: Any = app  # an ASGI app with Starlette's user_middleware and exception_handlers
        self.models = models

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        name, model, endpoint = route
        headers = _headers(scope, endpoint.first_header_wins)
        if any(key.startswith("ce-") for key in headers) or not endpoint.takes(headers):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client went away
            return
        request = endpoint.parse(body)
        if request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        ANSWERED[model.name] += 1
        try:
            reply = await endpoint.answer(name, model, request, headers)
        except Exception as exc:  # noqa: BLE001 - answered by the handler kserve registered for it
            await self._error(scope, receive, send, exc)
            return
        if not isinstance(reply, bytes):
            await reply(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(reply)).encode()),
                                (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": reply})

    def _route(self, scope: Scope) -> tuple[str, Any, type[Endpoint]] | None:
        """(model name, the ready pure model, the endpoint) of this request, or None: kserve's request."""
        if scope["type"] != "http" or scope["method"] != "POST" or not _adds_nothing(self.app):
            return None
        path: str = scope["path"]
        for endpoint in ENDPOINTS:
            if path.startswith(endpoint.prefix) and path.endswith(endpoint.suffix):
                break
        else:
            return None
        name = path[len(endpoint.prefix):-len(endpoint.suffix)]
        if not name or "/" in name:  # includes V2's /versions/{v}/infer
            return None
        model = self.models.get_model(name)
        if type(model) not in PURE_MODELS or not model.ready:
            return None
        return name, model, endpoint

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """Answer as kserve's app would: the handler registered for the exception's nearest class."""
        handlers: dict[Any, Any] = self.app.exception_handlers
        key = next((cls for cls in type(exc).__mro__ if cls in handlers), None)
        if key is None:
            raise exc
        response = await handlers[key](Request(scope, receive), exc)
        await response(scope, receive, send)
        if key in SERVER_ERRORS:
            raise exc  # as Starlette's ServerErrorMiddleware: uvicorn logs it and closes the connection


class AnsweredCollector:
    """``kfbox_replica_fast_predictions_total{model_name}`` from :data:`ANSWERED` as kserve's ``/metrics`` is
    read. Counting costs the route a dict update per request (0.6 us under ``timeit`` on the loaded 2-core
    machine, lambda included), where ``prometheus_client.Counter.labels(name).inc()`` takes a lock and a
    label lookup (7.5 us, ~2% of an iris request's 0.38 ms); 1.319 M instructions per iris V1 request
    with the count and without (``benchmarks/replica_instructions.py``)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("kfbox_replica_fast_predictions", "V1 predict and V2 infer requests answered "
                                     "by kfbox's lean route instead of kserve's (request_predict_seconds counts "
                                     "both).", labels=["model_name"])
        for name, count in list(ANSWERED.items()):
            family.add_metric([name], count)
        yield family


REGISTRY.register(AnsweredCollector())


def _adds_nothing(app: Any) -> bool:
    """Whether kserve's app does nothing around its routes that the fast path would skip: no middleware
    (kfbox's replica removes kserve's one), no body size limit, no root path and no active FastAPI
    telemetry (OpenTelemetry spans and metrics, off unless a provider is configured)."""
    telemetry = getattr(app, "_native_telemetry", None)  # FastAPI >= 0.16x; none before
    return (not app.user_middleware and getattr(app, "max_body_size", None) is None and not app.root_path
            and (telemetry is None or not telemetry.enabled()))


def _headers(scope: Scope, first_wins: bool) -> dict[str, str]:
    """The request's headers as kserve's endpoint hands them to the model: V1's ``dict(headers.items())``
    keeps a repeated header's last value, V2's ``dict(headers)`` its first."""
    if not first_wins:
        return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then the connection's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
