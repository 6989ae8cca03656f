"""The :class:`Platform`: what every subsystem of a running server shares.

A subsystem module exposes ``install(app, platform)``; there it mounts its routers,
registers start/stop hooks and, if its API has its own error body, an error renderer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry

from kfbox.config import Settings
from kfbox.db import Database
from kfbox.errors import Unavailable
from kfbox.server.protocol import Door
from kfbox.server.shortcut import Shortcut

if TYPE_CHECKING:  # the subsystems sit above the platform: their types only, never an import at run time
    from kfbox.monitoring.service import MonitoringService
    from kfbox.pipelines.schedules import ScheduleStore
    from kfbox.pipelines.secrets import SecretStore
    from kfbox.pipelines.service import PipelinesService
    from kfbox.registry.service import Registry
    from kfbox.server.session import Sessions
    from kfbox.serving.grpc_gateway import GrpcGateway
    from kfbox.serving.handoff_server import HandoffPlane
    from kfbox.serving.haproxy import HaproxyDataPlane
    from kfbox.serving.manager import ServingManager
    from kfbox.serving.resources import InferenceServices
    from kfbox.ui.notebooks import NotebookManager



@dataclasses.dataclass
class Services:
    """Each subsystem's object, set by its install hook; ``None`` while that subsystem is off (or not yet
    installed). A caller that cannot do without one reads it through :func:`required`."""

    pipelines: PipelinesService | None = None
    schedules: ScheduleStore | None = None
    secrets: SecretStore | None = None
    registry: Registry | None = None
    serving: ServingManager | None = None
    inferenceservices: InferenceServices | None = None
    grpc_gateway: GrpcGateway | None = None
    data_plane: HaproxyDataPlane | None = None
    """The HAProxy data plane (``--data-plane haproxy``); None with the Python gateway alone (the default)."""
    handoff: HandoffPlane | None = None
    """The connection hand-off (``--data-plane handoff``); None otherwise."""
    monitoring: MonitoringService | None = None
    notebooks: NotebookManager | None = None
    sessions: Sessions | None = None

    def installed(self) -> dict[str, object]:
        """The subsystems that are on, by name."""
        return {f.name: value for f in dataclasses.fields(self) if (value := getattr(self, f.name)) is not None}


T = TypeVar("T")


def required(service: T | None, name: str) -> T:
    """``service``, or :class:`~kfbox.errors.Unavailable` naming the subsystem that is off (rather than an
    ``AttributeError`` on ``None``): ``required(platform.services.pipelines, "pipelines").catalog``."""
    if service is None:
        raise Unavailable(f"The {name} subsystem is not running in this server.")
    return service


Hook = Callable[[], Any]
ErrorRenderer = Callable[[int, str], dict[str, Any]]
BodyLimitRule = Callable[[MutableMapping[str, Any]], int | None]


@dataclasses.dataclass
class Platform:
    settings: Settings
    db: Database
    metrics: CollectorRegistry = dataclasses.field(default_factory=CollectorRegistry)
    started_at: float = dataclasses.field(default_factory=time.time)
    on_startup: list[Hook] = dataclasses.field(default_factory=list)
    on_shutdown: list[Hook] = dataclasses.field(default_factory=list)
    error_renderers: list[tuple[str, ErrorRenderer]] = dataclasses.field(default_factory=list)
    body_limits: list[BodyLimitRule] = dataclasses.field(default_factory=list)
    """Per-request body limits (ASGI scope -> bytes, or None to pass); the first answer wins over
    ``settings.max_body_bytes`` (serving takes larger inference payloads than the other APIs)."""
    shortcuts: list[Shortcut] = dataclasses.field(default_factory=list)
    """Kinds of request answered by a short middleware chain instead of the whole app (the gateway's)."""
    door: Door = dataclasses.field(default_factory=Door)
    """Where a feature may take new connections before the server reads them (``--data-plane handoff``)."""
    services: Services = dataclasses.field(default_factory=Services)
    """Subsystem objects (e.g. ``services.registry``), for other subsystems to call."""
    record: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra fields for ``server.json`` (e.g. the HAProxy data plane's ``ingress_url``), set while installing."""
    health: dict[str, Callable[[], str]] = dataclasses.field(default_factory=dict)
    """Extra fields of ``/healthz``, read on each call (e.g. ``data_plane``: whether HAProxy runs or was given
    up, and ``ingress_url``: where it listens); ``kfbox status`` shows them, ``kfbox serve get`` reads them."""

    @property
    def url(self) -> str:
        """Where clients on this machine reach the server (loopback for a wildcard bind): ``server.json``,
        links, in-process calls."""
        return self.settings.url

    def render_error(self, path: str, status: int, message: str) -> dict[str, Any]:
        for prefix, render in self.error_renderers:
            if path.startswith(prefix):
                return render(status, message)
        return {"code": str(status), "message": message}
