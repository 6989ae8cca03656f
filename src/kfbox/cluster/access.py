"""Reaching an installed cluster: port-forwards on 127.0.0.1, credentials from their Secrets, teardown.

Port-forwards are ``kubectl port-forward --address 127.0.0.1`` children started in their own
session, their PIDs kept in ``<home>/cluster/<name>/forwards/``, so ``down`` stops exactly
the processes kfbox started and nothing else. Loopback only: the dashboard's cookies are
``Secure`` except on localhost (kubeflow/kubeflow#5803).

Example::

    forward = start_forward(home, "kubeflow", SERVICES["registry"])   # http://127.0.0.1:8081
    read_secret(runner, "kind-kubeflow", "kubeflow-user-example-com", "mlpipeline-minio-artifact")
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from kfbox.cluster import monitoring
from kfbox.cluster.plan import PROFILE_NAMESPACE
from kfbox.cluster.runner import Command, CommandRunner
from kfbox.cluster.state import cluster_dir
from kfbox.errors import Conflict, InvalidInput, NotFound, Unavailable


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    target: str
    local_port: int
    remote_port: int
    what: str
    path: str = "/"


SERVICES = {
    "dashboard": Service("dashboard", "istio-system", "svc/istio-ingressgateway", 8080, 80,
                         "Kubeflow dashboard and the Istio gateway (KFP, Model Registry, predictions)"),
    "registry": Service("registry", "kubeflow", "svc/model-registry-service", 8081, 8080,
                        "Model Registry REST, no auth (bypasses the sidecar)", "/api/model_registry/v1alpha3/"),
    "s3": Service("s3", "kubeflow", "svc/seaweedfs", 8333, 8333, "SeaweedFS S3 (bucket mlpipeline)"),
    "grafana": Service("grafana", monitoring.NAMESPACE, f"svc/{monitoring.GRAFANA_SERVICE}", 3000, 80, "Grafana"),
    "prometheus": Service("prometheus", monitoring.NAMESPACE, f"svc/{monitoring.PROMETHEUS_SERVICE}", 9090, 9090,
                          "Prometheus"),
}


def service(name: str) -> Service:
    try:
        return SERVICES[name]
    except KeyError:
        raise InvalidInput(f"Unknown service {name!r}. Choose from: {', '.join(SERVICES)}") from None


def _forwards(home: Path, cluster: str) -> Path:
    return cluster_dir(home, cluster) / "forwards"


def _alive(pid: int) -> bool:
    """True only for a live ``kubectl port-forward`` (a recycled PID running something else is not ours)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # argv[0] is kubectl, or an interpreter running a kubectl wrapper script
    return b"port-forward" in cmdline and any(part.endswith(b"kubectl") for part in cmdline[:2])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running_forwards(home: Path, cluster: str) -> dict[str, dict[str, int | str]]:
    found = {}
    folder = _forwards(home, cluster)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text())
        if _alive(int(record["pid"])):
            found[path.stem] = record
        else:
            path.unlink(missing_ok=True)
    return found


def start_forward(home: Path, cluster: str, svc: Service, port: int | None = None,
                  timeout: float = 15.0) -> dict[str, int | str]:
    """Start (or find) a port-forward for ``svc``; returns its record with ``url`` and ``pid``."""
    port = port or svc.local_port
    existing = running_forwards(home, cluster).get(svc.name)
    if existing:
        return existing
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise Conflict(f"Port {port} on 127.0.0.1 is in use, so {svc.name} cannot be exposed there. "
                           f"Pick another: kfbox cluster expose {svc.name} --port N") from None
    folder = _forwards(home, cluster)
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / f"{svc.name}.log", "ab")  # noqa: SIM115 - handed to the child
    argv = ["kubectl", "--context", f"kind-{cluster}", "port-forward", "--address", "127.0.0.1", "-n", svc.namespace,
            svc.target, f"{port}:{svc.remote_port}"]
    try:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    except FileNotFoundError:
        raise Unavailable("kubectl is not installed; check with: kfbox cluster doctor") from None
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (folder / f"{svc.name}.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise Unavailable(f"kubectl port-forward for {svc.name} exited: {' '.join(tail)}. "
                              "Is the cluster up? Check with: kfbox cluster status")
        if _port_open(port):
            record: dict[str, int | str] = {"pid": process.pid, "port": port, "url": f"http://127.0.0.1:{port}"}
            (folder / f"{svc.name}.json").write_text(json.dumps(record))
            return record
        time.sleep(0.1)
    process.terminate()
    raise Unavailable(f"kubectl port-forward for {svc.name} did not listen on {port} within {timeout:.0f}s")


def stop_forwards(home: Path, cluster: str) -> list[str]:
    stopped = []
    for name, record in running_forwards(home, cluster).items():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(record["pid"]), signal.SIGTERM)
        (_forwards(home, cluster) / f"{name}.json").unlink(missing_ok=True)
        stopped.append(name)
    return stopped


def read_secret(runner: CommandRunner, context: str, namespace: str, name: str) -> dict[str, str]:
    """A Secret's data, base64-decoded (``kubectl get secret -o json``)."""
    result = runner.run(Command(("kubectl", "--context", context, "get", "secret", name, "-n", namespace,
                                 "-o", "json"), timeout=30))
    if not result.ok:
        raise NotFound(f"Secret {namespace}/{name} could not be read: {result.first_error_line()}. "
                       "Is that component installed? Check with: kfbox cluster status")
    data = json.loads(result.stdout).get("data") or {}
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def create_token(runner: CommandRunner, context: str, namespace: str = PROFILE_NAMESPACE,
                 account: str = "default-editor", duration: str = "24h") -> str:
    """A service-account JWT the gateway accepts (with oauth2-proxy's m2m-dex-and-kind overlay)."""
    result = runner.run(Command(("kubectl", "--context", context, "-n", namespace, "create", "token", account,
                                 f"--duration={duration}"), timeout=30))
    if not result.ok:
        raise Unavailable(f"kubectl create token {account} -n {namespace} failed: {result.first_error_line()}")
    return result.stdout.strip()
