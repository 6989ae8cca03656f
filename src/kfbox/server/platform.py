"""The :class:`Platform`: what every subsystem of a running server shares.

A subsystem module exposes ``install(app, platform)``; there it mounts its routers,
registers start/stop hooks and, if its API has its own error body, an error renderer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypedDict

from prometheus_client import CollectorRegistry

from kfbox.config import Settings
from kfbox.db import Database
from kfbox.server.shortcut import Shortcut

if TYPE_CHECKING:  # the subsystems sit above the platform: their types only, never an import at run time
    from kfbox.monitoring.service import MonitoringService
    from kfbox.pipelines.schedules import ScheduleStore
    from kfbox.pipelines.secrets import SecretStore
    from kfbox.pipelines.service import PipelinesService
    from kfbox.registry.service import Registry
    from kfbox.server.session import Sessions
    from kfbox.serving.grpc_gateway import GrpcGateway
    from kfbox.serving.manager import ServingManager
    from kfbox.serving.resources import InferenceServices
    from kfbox.ui.notebooks import NotebookManager



class Services(TypedDict, total=False):
    """Each subsystem's object, set by its install hook; a subsystem that is off has no entry (use ``.get``)."""

    pipelines: PipelinesService
    schedules: ScheduleStore
    secrets: SecretStore
    registry: Registry
    serving: ServingManager
    inferenceservices: InferenceServices
    grpc_gateway: GrpcGateway
    monitoring: MonitoringService
    notebooks: NotebookManager
    sessions: Sessions


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
    services: Services = dataclasses.field(default_factory=lambda: Services())
    """Subsystem objects by name (e.g. ``"registry"``), for other subsystems to call."""

    @property
    def url(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.settings.port}"

    def render_error(self, path: str, status: int, message: str) -> dict[str, Any]:
        for prefix, render in self.error_renderers:
            if path.startswith(prefix):
                return render(status, message)
        return {"code": str(status), "message": message}
