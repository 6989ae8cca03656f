"""Mounts serving: the InferenceService API, the inference gateway, host routing and the manager.

Other subsystems reach the manager as ``platform.services.serving`` (a
:class:`~kfbox.serving.manager.ServingManager`): ``await manager.apply(manifest, namespace)``,
``manager.deployments``; ``kfbox.serving.status.describe`` gives an InferenceService's status
with ``status.url``, ``status.address.url`` and ``status.replicas``.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from kfbox.apis import KNATIVE, SERVING
from kfbox.server.auth import TokenAuth
from kfbox.server.lazy_routes import install_lazy
from kfbox.server.platform import Platform
from kfbox.server.shortcut import Shortcut
from kfbox.serving.gateway import PREFIX, Gateway, HostRouting
from kfbox.serving.kube_api import KubeStatus, status_body
from kfbox.serving.manager import ServingManager
from kfbox.serving.resources import InferenceServices


def install(app: Starlette, platform: Platform) -> None:
    manager = ServingManager(platform)
    platform.services.serving = manager
    for prefix in (PREFIX + "/", "/v1/models/", "/v2/"):  # gateway paths, by path and by Host header
        platform.error_renderers.append((prefix, lambda _status, message: {"error": message}))
    domain_suffix = "." + platform.settings.ingress_domain.lower()
    limit = platform.settings.serving_max_body_bytes

    def serving_body_limit(scope: MutableMapping[str, Any]) -> int | None:
        if str(scope.get("path", "")).startswith(PREFIX + "/"):  # the gateway's usual request: no Host to look at
            return limit
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower().rsplit(":", 1)[0]
        return limit if host.endswith(domain_suffix) else None

    platform.body_limits.append(serving_body_limit)
    resources = InferenceServices(manager)
    platform.services.inferenceservices = resources
    # Kubernetes-style API: Status bodies, ahead of KFP's /apis
    for prefix in ("/apis/serving.kserve.io", "/apis/serving.knative.dev", "/apis/apps", "/apis/autoscaling",
                   "/api/v1/"):
        platform.error_renderers.insert(0, (prefix, lambda status, message: status_body(status, message)))

    async def kube_status(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, KubeStatus)
        return JSONResponse(exc.body(), status_code=exc.status_code)

    app.add_exception_handler(KubeStatus, kube_status)
    # the APIs' routes are built by the first request under their paths (~30 ms less to ready)
    install_lazy(app, lambda: _serving_routes(resources), prefixes=(SERVING,))
    install_lazy(app, lambda: _knative_routes(resources), prefixes=(KNATIVE + "/",))
    install_lazy(app, lambda: _raw_routes(resources), prefixes=("/apis/apps/v1/", "/apis/autoscaling/v1/",
                                                                "/apis/autoscaling/v2/"))
    install_lazy(app, lambda: _discovery_routes(resources), prefixes=("/api", "/version", "/openapi"))
    # innermost, after token auth (added before this install): auth is decided on the route served,
    # and FastAPI's routing (~1 ms a request across every API's routes) never sees a gateway request
    app.user_middleware.append(Middleware(Gateway, manager=manager))
    app.add_middleware(HostRouting, domain=platform.settings.ingress_domain)
    # the same three, for the server's protocol to run without the rest of the stack (kfbox.server.shortcut)
    routing = HostRouting(TokenAuth(Gateway(_not_a_gateway_request, manager), platform),
                          platform.settings.ingress_domain)
    # first: host routing is the outermost of these in the full stack, so a model's Host is the gateway's
    # whatever its path (/api/model_registry/... included), before any other feature's shortcut
    platform.shortcuts.insert(0, Shortcut(claims=routing.claims, app=routing))
    platform.on_startup.append(manager.start)
    platform.on_startup.append(resources.start)
    if platform.settings.serving_grpc_port >= 0:  # off by default: grpc (~40 ms) is imported only when on
        from kfbox.serving.grpc_gateway import GrpcGateway

        grpc_gateway = GrpcGateway(manager)
        platform.services.grpc_gateway = grpc_gateway
        platform.on_startup.append(grpc_gateway.start)
        platform.on_shutdown.append(grpc_gateway.stop)
    platform.on_shutdown.append(resources.shutdown)
    platform.on_shutdown.append(manager.shutdown)
    if platform.settings.data_plane == "haproxy":  # opt-in: kfbox drives HAProxy on the ingress port
        from kfbox.serving.haproxy import HaproxyDataPlane, preflight

        preflight(platform.settings)
        plane = HaproxyDataPlane(manager, platform.settings, grpc=platform.services.grpc_gateway)
        manager.release = plane.release
        manager.forget = plane.forget
        platform.services.data_plane = plane
        platform.record["ingress_url"] = plane.url
        platform.health["data_plane"] = plane.health
        platform.health["ingress_url"] = lambda: plane.url  # for clients without server.json: kfbox serve get
        platform.health["data_plane_state"] = lambda: plane.state  # up, restarting, stopped: where to send inference
        platform.on_startup.insert(platform.on_startup.index(manager.start), plane.start)
        platform.on_shutdown.append(plane.stop)  # shutdown hooks run last to first: HAProxy stops before replicas
    elif platform.settings.data_plane == "handoff":  # opt-in: kfbox's port passes model connections to replicas
        from kfbox.serving import handoff_server

        handoff_server.preflight()
        handoff_plane = handoff_server.HandoffPlane(manager, platform.settings, platform.door)
        platform.services.handoff = handoff_plane
        platform.health["data_plane"] = lambda: handoff_plane.health
        platform.on_startup.append(handoff_plane.start)
        platform.on_shutdown.append(handoff_plane.stop)


async def _not_a_gateway_request(scope: Scope, receive: Receive, send: Send) -> None:
    """The short chain's end past the gateway: never reached, its shortcut claims only gateway requests."""
    raise RuntimeError(f"the gateway's shortcut claimed {scope['path']!r}, which is not a gateway path")


def _serving_routes(resources: InferenceServices) -> list[BaseRoute]:
    from kfbox.serving.router import serving_router

    return list(serving_router(resources).routes)


def _knative_routes(resources: InferenceServices) -> list[BaseRoute]:
    """Each InferenceService's predictor as KServe's Knative Service, read-only (kfbox.serving.knative)."""
    from kfbox.serving.knative import knative_router

    return list(knative_router(resources).routes)


def _raw_routes(resources: InferenceServices) -> list[BaseRoute]:
    """Standard-mode predictors as KServe's Deployments, their ReplicaSets and HorizontalPodAutoscalers, read-only
    (kfbox.serving.raw, replica_sets)."""
    from kfbox.serving.raw import raw_router
    from kfbox.serving.replica_sets import replica_set_router

    return [*raw_router(resources).routes, *replica_set_router(resources).routes]


def _discovery_routes(resources: InferenceServices) -> list[BaseRoute]:
    """What kubectl asks first: /api, /apis, /version, /openapi/v2 and v3 (kfbox.serving.discovery); and the
    InferenceServices' events and their replicas' pods under /api/v1 (kfbox.serving.event_routes, pod_routes)."""
    from kfbox.serving.discovery import discovery_router
    from kfbox.serving.event_routes import events_router
    from kfbox.serving.pod_routes import pods_router

    return [*discovery_router(resources).routes, *events_router(resources.manager.events).routes,
            *pods_router(resources).routes]
