"""The gRPC gateway: KServe's V2 gRPC protocol (``inference.GRPCInferenceService``) on its own port.

``KFBOX_SERVING_GRPC_PORT`` (``kfbox up`` env; unset: off, ``0``: a free port, logged) opens
an HTTP/2 port on the platform's host that proxies each call to a ready replica of the
revision the traffic split picks — the same routing, cold starts and autoscaling counts as the
HTTP gateway. kserve's ``InferenceGRPCClient("127.0.0.1:PORT")`` works unchanged.

Which InferenceService: the one serving the request's model name (the InferenceService's
name, or the ``--model_name`` of its ``spec.predictor.model.args``) in namespace
``x-kfbox-namespace`` (metadata) or, when not given, the one namespace holding that name
(``default`` when several do). gRPC servers in Python do not
see ``:authority``, so KServe's Host-based routing has this metadata as its stand-in. ``ServerLive``,
``ServerReady`` and ``ServerMetadata`` are answered by kfbox. Replicas need gRPC on: annotation
``serving.kfbox.io/enable-grpc: "true"``. With a token, calls need ``authorization: Bearer
<token>`` metadata, as HTTP calls do.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

import grpc
from grpc import aio

from kfbox import __version__
from kfbox.addresses import bracket
from kfbox.serving.manager import ServingManager
from kfbox.serving.pool import SLOT_TIMEOUT
from kfbox.serving.store import revision_name

log = logging.getLogger(__name__)
SERVICE = "/inference.GRPCInferenceService/"
MODEL_CALLS = {"ModelInfer": "ModelInferRequest", "ModelReady": "ModelReadyRequest",
               "ModelMetadata": "ModelMetadataRequest"}
FORWARD_METADATA = ("x-request-id", "traceparent")


class GrpcGateway:
    def __init__(self, manager: ServingManager) -> None:
        self.manager = manager
        self.settings = manager.settings
        self.port: int | None = None
        self._server: aio.Server | None = None
        self._channels: dict[str, aio.Channel] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        """Startup hook (on the server's loop): bind now, so a taken port fails the start loudly."""
        if self.settings.serving_grpc_port < 0:
            return
        server = aio.server()
        server.add_generic_rpc_handlers([_Handler(self)])
        host = self.settings.host
        self.port = server.add_insecure_port(f"{bracket(host)}:{self.settings.serving_grpc_port}")
        self._server = server
        self._tasks.add(asyncio.get_running_loop().create_task(server.start()))
        log.info("gRPC gateway (KServe V2 gRPC) on %s:%d", host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._tasks.add(asyncio.get_running_loop().create_task(self._server.stop(0)))

    def channel(self, target: str) -> aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = aio.insecure_channel(target)
        return channel

    # --- one call ----------------------------------------------------------------------
    async def call(self, method: str, request: bytes, context: aio.ServicerContext) -> bytes:
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        token = self.settings.token
        if token and not hmac.compare_digest(metadata.get("authorization", ""), f"Bearer {token}"):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "Missing or wrong bearer token: send metadata 'authorization: Bearer <token>'.")
        name = method.removeprefix(SERVICE)
        if name == "ServerLive":
            return bytes(pb.ServerLiveResponse(live=True).SerializeToString())
        if name == "ServerReady":
            return bytes(pb.ServerReadyResponse(ready=True).SerializeToString())
        if name == "ServerMetadata":
            return bytes(pb.ServerMetadataResponse(name="kfbox", version=__version__).SerializeToString())
        if name not in MODEL_CALLS:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not offered by the kfbox gateway.")
        message = getattr(pb, MODEL_CALLS[name])()
        try:
            message.ParseFromString(request)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Cannot parse the {name} request: {exc}")
        model = message.model_name if name == "ModelInfer" else message.name
        key = self._route(model, metadata.get("x-kfbox-namespace"))
        if key is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"No InferenceService serves model {model!r}; list them with: kfbox serve list")
        assert key is not None
        return await self._forward(key, method, request, metadata, context)

    def _route(self, model: str, namespace: str | None) -> tuple[str, str] | None:
        deployments = self.manager.deployments
        matches = [key for key, deployment in deployments.items()
                   if deployment.serves(model) and namespace in (None, key[0])]
        if len(matches) > 1:  # several serve that name: the one named so, then the one in 'default'
            matches = [key for key in matches if key[1] == model] or [key for key in matches if key[0] == "default"]
        return matches[0] if len(matches) == 1 else None

    async def _forward(self, key: tuple[str, str], method: str, request: bytes, metadata: dict[str, str],
                       context: aio.ServicerContext) -> bytes:
        namespace, name = key
        deployment = self.manager.deployments[key]
        metrics = self.manager.metrics
        chosen = deployment.choose()
        if chosen is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"InferenceService {namespace}/{name} has no revision "
                                                             "to serve yet.")
        assert chosen is not None
        number, pool = chosen
        revision = revision_name(name, number)
        pool.admit(time.monotonic())
        pool.inflight += 1
        metrics.inflight.labels(*key).inc()
        started = time.perf_counter()
        code = "OK"
        try:
            replica = pool.pick()
            if replica is None and pool.ready_count:  # every ready replica at its containerConcurrency
                replica = await pool.wait_slot(context.time_remaining() or SLOT_TIMEOUT)
            elif replica is None and pool.failure is None:
                replica = await pool.wait_ready(self.settings.serving_cold_start_timeout, self.manager.wake)
            if replica is None:
                code = "UNAVAILABLE"
                reason = (pool.failure or "no replica is ready").rstrip(".")
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"InferenceService {namespace}/{name} cannot serve ({revision}): {reason}.")
            assert replica is not None
            if not replica.grpc_port:
                code = "FAILED_PRECONDITION"
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"InferenceService {namespace}/{name} does not serve gRPC; add the annotation "
                                    'serving.kfbox.io/enable-grpc: "true".')
            forward = [(k, v) for k, v in metadata.items() if k in FORWARD_METADATA]
            replica.inflight += 1
            try:
                call = self.channel(f"127.0.0.1:{replica.grpc_port}").unary_unary(method)
                remaining = context.time_remaining()
                reply: bytes = await call(request, metadata=forward, timeout=remaining)
            except aio.AioRpcError as exc:
                code = exc.code().name
                await context.abort(exc.code(), exc.details() or code)
            finally:
                pool.release(replica)
            await context.send_initial_metadata((("x-kfbox-revision", revision),))
            return reply
        finally:
            pool.inflight -= 1
            metrics.inflight.labels(*key).dec()
            metrics.requests.labels(*key, f"grpc-{code}").inc()
            metrics.latency.labels(*key).observe(time.perf_counter() - started)


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpcio ships no types
    def __init__(self, gateway: GrpcGateway) -> None:
        self.gateway = gateway

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if not method.startswith(SERVICE):
            return None

        async def behavior(request: bytes, context: aio.ServicerContext) -> bytes:
            return await self.gateway.call(method, request, context)

        return grpc.unary_unary_rpc_method_handler(behavior)
