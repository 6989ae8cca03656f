"""Settings: flags > ``KFBOX_*`` environment > defaults, built once and passed down.

Example::

    settings = Settings.load(port=9000)          # flags win
    settings.db_url                               # sqlite:///<home>/kfbox.db unless KFBOX_DB is set
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from kfbox.addresses import is_loopback, local_url
from kfbox.errors import InvalidInput

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MAX_BODY_BYTES = 1024 * 1024
ENV_PREFIX = "KFBOX_"
CONTAINER_RUNTIMES = ("auto", "docker", "podman", "host")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DATA_PLANES = ("python", "haproxy", "handoff")


def default_home() -> Path:
    return Path(os.environ.get("KFBOX_HOME") or Path.home() / ".kfbox").expanduser()


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the server and its subsystems read; no module reads the environment itself."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    home: Path = dataclasses.field(default_factory=default_home)
    db: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    max_body_bytes: int = MAX_BODY_BYTES
    run_concurrency: int = 2
    s3_endpoint: str | None = None
    s3_access_key: str | None = dataclasses.field(default=None, repr=False)
    s3_secret_key: str | None = dataclasses.field(default=None, repr=False)
    s3_bucket: str | None = None
    ingress_domain: str = "example.com"
    serving_max_body_bytes: int = 16 * 1024 * 1024
    serving_scale_window: float = 60.0
    """Seconds without load before replicas scale down (Knative's stable window); per service:
    annotation autoscaling.knative.dev/window."""
    serving_hpa_downscale_stabilization: float = 300.0
    """Seconds over which a cpu- or memory-scaled predictor (Kubernetes' HPA) scales down only to the highest
    recommendation (KFBOX_SERVING_HPA_DOWNSCALE_STABILIZATION): kube-controller-manager's
    ``--horizontal-pod-autoscaler-downscale-stabilization``, cluster-wide there too; default 5 minutes."""
    serving_cold_start_timeout: float = 60.0
    serving_replica_start_timeout: float = 120.0
    serving_warm_standby: bool = True
    """Fork replicas from a fork server that imported kserve once (kfbox.serving.forkserver); off: each
    replica starts as a fresh interpreter. The name is kept from the standby replica it replaced."""
    serving_queue_per_replica: int = 128
    serving_drain_seconds: float = 30.0
    """The grace a stopping replica's requests get to finish (Kubernetes' terminationGracePeriodSeconds), and
    an old HAProxy worker's after a reload (its ``hard-stop-after``): a stream longer than this is cut when its
    replica stops or, with the HAProxy data plane, when the routes change. KFBOX_SERVING_DRAIN_SECONDS."""
    """Requests the gateway holds per ready replica of a revision; the next is answered 503 at once."""
    data_plane: str = "python"
    """What carries inference traffic besides the server's own gateway (``kfbox up --data-plane``,
    KFBOX_DATA_PLANE): python (the gateway only), haproxy (also Debian's haproxy on ``ingress_port``,
    configured by kfbox: kfbox.serving.haproxy) or handoff (the server's port passes a model's connections to
    its replicas, which answer them directly: kfbox.serving.handoff)."""
    ingress_port: int = -1
    """HAProxy's port with ``data_plane=haproxy``: -1 the server's port + 1 (8081), or a free one when the
    server's port is 0; 0 a free one."""
    data_plane_restart_backoff: float = 0.5
    """Seconds before HAProxy is started again after it exited (KFBOX_DATA_PLANE_RESTART_BACKOFF), doubling at
    each exit within kfbox.serving.haproxy's crash window, to at most 8 s."""
    serving_grpc_port: int = -1
    """The gRPC gateway's port (KServe V2 gRPC, kfbox.serving.grpc_gateway); -1: off, 0: a free port."""
    allow_unsafe_pickle: bool = False
    """Load pickle/joblib model files unrestricted for every service (KFBOX_ALLOW_UNSAFE_PICKLE=1);
    otherwise only per service, by annotation serving.kfbox.io/allow-unsafe-pickle."""
    pipelines_fork_tasks: bool = True
    """Start lightweight tasks by forking a warm interpreter (kfbox.pipelines.forkserver)."""
    pipelines_spare_worker: bool = True
    """Keep one run worker with kfp imported, waiting, so the next run starts at once
    (KFBOX_PIPELINES_SPARE_WORKER=0: start each worker on demand; the test suite's servers that run
    no pipeline, to spare ~80 MiB and a kfp import per server)."""
    task_concurrency: int = 0
    """Executor tasks one run runs at once (KFBOX_TASK_CONCURRENCY); 0: twice the cores, at least 4."""
    """Keep one replica process with kserve imported, waiting, to cut cold starts."""

    allowed_hosts: str = ""
    """Extra names (comma-separated; ``*.corp.example`` for a domain) the server answers to besides
    loopback, IP literals, the bound host and ``*.<ingress_domain>``: the DNS-rebinding defence."""
    http_header_timeout: float = 20.0
    """Seconds a client has to send a request's headers (slowloris defence)."""
    http_body_timeout: float = 60.0
    """Seconds a request body may stall between chunks before the connection is closed."""
    max_connections_per_client: int = 1024
    """Open connections one client address may hold (0: no cap); above it a new one gets 503."""
    guard_checks: bool = True
    """Host/Origin/path checks on every request; off only for the A/B benchmark of their cost."""
    secret_key: str | None = dataclasses.field(default=None, repr=False)
    """Key for secrets at rest (any string; KFBOX_SECRET_KEY). Unset: <home>/secret.key, made on first use."""
    container_runtime: str = "auto"
    """How container components run (KFBOX_CONTAINER_RUNTIME, ``kfbox up --containers``): auto (docker or
    podman when its engine answers), docker, podman, or host (the command on this machine, image unused)."""
    importer_max_bytes: int = 5 * 1024**3
    """Largest file ``dsl.importer`` downloads over http(s)."""
    prometheus: bool = False
    """Start a local Prometheus with the server (``kfbox up --prometheus``, KFBOX_PROMETHEUS)."""
    prometheus_port: int = 0
    """Loopback port of the local Prometheus; 0 picks a free one."""
    prometheus_retention: str = "7d"
    """How long the local Prometheus keeps data (its --storage.tsdb.retention.time)."""
    prometheus_scrape_interval: str = "5s"
    """How often the local Prometheus scrapes kfbox and its replicas, and refreshes their list."""
    prometheus_alert_for: str = ""
    """Replace every alerting rule's ``for:`` in the local Prometheus (e.g. ``5s``, for tests and demos);
    empty keeps the shipped durations."""
    log_level: str = "warning"
    """The server's log level, for kfbox's own loggers and uvicorn's (KFBOX_LOG_LEVEL): one of LOG_LEVELS."""
    monitoring_sample_interval: float = 5.0
    """Seconds between samples of the dashboard's own one-hour chart history (used without Prometheus)."""

    @classmethod
    def load(cls, **flags: Any) -> Settings:
        """Build settings from flags (``None`` means unset), then ``KFBOX_<NAME>``, then defaults."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            flag = flags.get(field.name)
            env = os.environ.get(ENV_PREFIX + field.name.upper())
            raw = flag if flag is not None else env
            if raw is None or raw == "":
                continue
            values[field.name] = _coerce(field.name, field.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidInput(f"Port {self.port} is out of range; use 0-65535 (0 picks a free port).")
        if not is_loopback(self.host) and not self.token:
            raise InvalidInput(
                f"Binding to {self.host} exposes kfbox beyond this machine; pass --token "
                "(or set KFBOX_TOKEN) so every API call must carry it."
            )
        if not self.guard_checks and not is_loopback(self.host):
            raise InvalidInput("KFBOX_GUARD_CHECKS=0 turns off the Host, Origin and path checks; it is for "
                               f"benchmarks on loopback only, not for a server bound to {self.host}.")
        if self.log_level not in LOG_LEVELS:
            raise InvalidInput(f"Log level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)} (KFBOX_LOG_LEVEL).")
        if self.data_plane not in DATA_PLANES:
            raise InvalidInput(f"Data plane {self.data_plane!r} is not one of {', '.join(DATA_PLANES)} "
                               "(--data-plane / KFBOX_DATA_PLANE).")
        if not -1 <= self.ingress_port <= 65535:
            raise InvalidInput(f"Ingress port {self.ingress_port} is out of range; use 0-65535 (0 picks a free "
                               "port, -1 the server's port + 1).")
        if not 0 <= self.data_plane_restart_backoff <= 60:
            raise InvalidInput(f"Data plane restart backoff {self.data_plane_restart_backoff}s is out of range; "
                               "use 0-60 seconds (KFBOX_DATA_PLANE_RESTART_BACKOFF).")
        if self.serving_hpa_downscale_stabilization < 0:
            raise InvalidInput(f"HPA downscale stabilization {self.serving_hpa_downscale_stabilization}s is negative; "
                               "use 0 or more seconds (KFBOX_SERVING_HPA_DOWNSCALE_STABILIZATION).")
        if self.container_runtime not in CONTAINER_RUNTIMES:
            raise InvalidInput(f"Container runtime {self.container_runtime!r} is not one of "
                               f"{', '.join(CONTAINER_RUNTIMES)} (--containers / KFBOX_CONTAINER_RUNTIME).")

    @property
    def url(self) -> str:
        """The server's URL for clients on this machine: loopback for a wildcard ``host``
        (:func:`kfbox.addresses.local_url`)."""
        return local_url(self.host, self.port)

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.home / 'kfbox.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def pvc_dir(self) -> Path:
        return self.home / "pvc"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving"

    @property
    def venvs_dir(self) -> Path:
        return self.home / "venvs"

    @property
    def pidfile(self) -> Path:
        return self.home / "kfbox.pid"

    @property
    def server_record(self) -> Path:
        """JSON written by ``kfbox up``: where clients find the running server."""
        return self.home / "server.json"


def _coerce(name: str, annotation: Any, raw: Any) -> Any:
    kind = str(annotation)
    try:
        if "Path" in kind:
            return Path(raw).expanduser().resolve()
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("bool") and isinstance(raw, str):
            if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError("expected true or false")
            return raw.lower() in ("1", "true", "yes", "on")
    except ValueError as exc:
        raise InvalidInput(f"Setting {name}={raw!r} is not valid: {exc}") from exc
    return raw
