"""Shared by the serving tests: a real iris model, a gated custom model, manifests built with the kserve SDK,
waiting."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from tests.support import ServerProcess, run_cli

# kserve, kubernetes, sklearn and numpy are imported in the functions that use them: most serving test modules
# import this one, and every pytest worker imports every test module (~3 s of CPU for those four).


class SharedServer(NamedTuple):
    """The serving package's shared ``kfbox up`` (tests/serving/conftest.py's ``shared_server``)."""

    server: ServerProcess
    grpc_port: int
    """Its gRPC gateway's port (KFBOX_SERVING_GRPC_PORT)."""


SERVING = "/apis/serving.kserve.io/v1beta1"
API = SERVING + "/namespaces/{ns}/inferenceservices"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]


GATED_MODEL = '''
import asyncio
import pathlib

from kserve import Model


class Gated(Model):
    """Streams two JSON lines, the second once the gate file exists; or holds a reply; or echoes headers."""

    def load(self):
        self.ready = True
        self.inside = 0
        return True

    async def predict(self, payload, headers=None):
        if payload.get("echo"):
            return {"headers": dict(headers or {})}
        gate = pathlib.Path(payload["gate"])
        if payload.get("stream"):
            return self.stream(gate)
        if payload.get("count"):
            return {"predictions": [await self.counted(gate, pathlib.Path(payload["count"]))]}
        return {"predictions": [await self.wait(gate)]}

    async def counted(self, gate, record):
        self.inside += 1
        try:
            most = max(self.inside, int(record.read_text()) if record.exists() else 0)
            record.write_text(str(most))
            return await self.wait(gate)
        finally:
            self.inside -= 1

    async def wait(self, gate):
        for _ in range(2400):
            if gate.exists():
                return "released"
            await asyncio.sleep(0.05)
        return "timed out"

    async def stream(self, gate):
        ended = gate.with_suffix(".ended")
        try:
            yield b'{"token": "first"}\\n'
            yield ('{"token": "%s"}\\n' % await self.wait(gate)).encode()
        except BaseException:  # cancelled: the client went away
            ended.write_text("stopped")
            raise
        ended.write_text("finished")
'''
"""A custom ``kserve.Model`` whose reply waits for a *gate* file the test creates, so no assertion depends on
timing: ``{"gate": PATH}`` holds a reply (``"released"``, or ``"timed out"`` after 120 s), ``{"gate": PATH,
"stream": true}`` streams a token at once and one when released, ``{"gate": PATH, "count": FILE}`` holds it and
writes into FILE the most requests the replica has held at once so far, ``{"echo": true}`` returns the headers
it got."""


def gated_model(folder: Path) -> dict[str, str]:
    """Write GATED_MODEL into ``folder``; returns the annotations that serve it (with ``fmt="custom"``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gated_model.py").write_text(GATED_MODEL)
    return gated_annotations(folder)


def gated_annotations(folder: Path) -> dict[str, str]:
    """The annotations that serve the GATED_MODEL written into ``folder`` by ``gated_model``."""
    return {"serving.kfbox.io/model-class": "gated_model:Gated", "serving.kfbox.io/python-path": str(folder)}


def assert_overloaded_then_released(refused: httpx.Response, gate: Path, threads: list[threading.Thread],
                                    held: list[httpx.Response]) -> None:
    """With a GATED_MODEL request from each of ``threads`` held at a full replica, ``refused`` (one more) was
    turned away at once: 503, ``Retry-After: 1`` and KServe's error body naming the overload. Opening ``gate``
    then answers every held request. (A helper, not a test module: pytest does not rewrite these asserts.)"""
    assert held == [], held  # answered while the replica still holds the others
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "1", refused.headers
    assert set(refused.json()) == {"error"} and "overloaded" in refused.json()["error"], refused.text
    gate.touch()
    for thread in threads:
        thread.join(60)
    assert [r.json() for r in held] == [{"predictions": ["released"]}] * len(threads), held


def train_iris(folder: Path, kind: str = "logistic") -> Any:
    """Train an iris classifier and save it as ``folder/model.joblib``; returns the model."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    features, labels = load_iris(return_X_y=True)
    model = (LogisticRegression(max_iter=500) if kind == "logistic" else DecisionTreeClassifier(max_depth=2))
    model.fit(features, labels)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    return model


def process_title(pid: int) -> str:
    """What ``ps`` shows for ``pid``: its command line, arguments joined by spaces."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()


def expected(model: Any, rows: list[list[float]] = ROWS) -> list[int]:
    import numpy as np

    return [int(v) for v in model.predict(np.array(rows))]


def inference_service(name: str, storage_uri: str | None, *, fmt: str = "sklearn", namespace: str = "default",
                      annotations: dict[str, str] | None = None, resource_version: str | None = None,
                      **predictor: Any) -> Any:
    """An InferenceService as the upstream kserve SDK's object (``V1beta1InferenceService``), as a user builds it."""
    from kserve import (
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
        constants,
    )
    from kubernetes.client import V1ObjectMeta

    model = V1beta1ModelSpec(model_format=V1beta1ModelFormat(name=fmt), storage_uri=storage_uri)
    return V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1, kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=V1ObjectMeta(name=name, namespace=namespace, annotations=annotations,
                              resource_version=resource_version),
        spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(model=model, **predictor)))


def manifest(name: str, storage_uri: str | None, **kwargs: Any) -> dict[str, Any]:
    """An InferenceService built with the upstream kserve SDK (``inference_service``), serialised as kubectl
    would send it."""
    from kserve import ApiClient

    return ApiClient().sanitize_for_serialization(  # type: ignore[no-any-return]
        inference_service(name, storage_uri, **kwargs))


def apply(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """Create (201), or replace at the current resourceVersion (200), as `kubectl replace` after a 409. A status
    update between the read and the replace (a replica became ready) makes that version stale: read again and
    retry, as client-go's RetryOnConflict does."""
    ns = body["metadata"].get("namespace", "default")
    reply = client.post(API.format(ns=ns), json=body)
    if reply.status_code == 409:
        path = API.format(ns=ns) + "/" + body["metadata"]["name"]
        for _ in range(5):
            version = client.get(path).json()["metadata"]["resourceVersion"]
            reply = client.put(path, json={**body, "metadata": {**body["metadata"], "resourceVersion": version}})
            if reply.status_code != 409:
                break
        assert reply.status_code == 200, reply.text
    else:
        assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


def delete(client: httpx.Client, name: str, namespace: str = "default") -> None:
    """Delete a service on a server other tests share: a service whose model fails to load is otherwise
    restarted (back-off up to 30 s, a kserve import each time) for the rest of that server's life."""
    reply = client.delete(API.format(ns=namespace) + f"/{name}")
    assert reply.status_code == 200, reply.text


def status(client: httpx.Client, name: str, namespace: str = "default") -> dict[str, Any]:
    reply = client.get(API.format(ns=namespace) + f"/{name}")
    assert reply.status_code == 200, reply.text
    return reply.json()["status"]  # type: ignore[no-any-return]


def ready(st: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in st["conditions"] if c["type"] == "Ready")


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_ready(client: httpx.Client, name: str, namespace: str = "default", timeout: float = 90.0) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = status(client, name, namespace)
        return st if ready(st)["status"] == "True" else None
    return wait_for(check, timeout, f"{namespace}/{name} Ready")  # type: ignore[no-any-return]


def kfbox(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against the test server, in this process (tests.support.run_cli)."""
    return run_cli(*args, "--url", url)


def v1(client: httpx.Client, name: str, rows: list[list[float]] = ROWS, **kwargs: Any) -> httpx.Response:
    return client.post(f"/serving/default/{name}/v1/models/{name}:predict", json={"instances": rows}, **kwargs)


def haproxy(home: Path, command: str) -> str:
    """The answer of the HAProxy data plane's master CLI (``<home>/haproxy/master.sock``) to ``command``; empty
    while the master does not answer (it re-executes itself at a reload)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(home / "haproxy" / "master.sock"))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            return b"".join(iter(lambda: sock.recv(65536), b"")).decode()
        except OSError:
            return ""


def haproxy_slots(home: Path, name: str, namespace: str = "default") -> dict[str, int]:
    """The servers (slots: ``s1``, ``s2``...) HAProxy's current worker sends the service's requests to (not in
    maintenance), each with its replica's port, read from its ``show stat`` by column name."""
    lines = haproxy(home, "@1 show stat -1 4 -1").splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    columns = lines[0][2:].split(",")
    rows = [dict(zip(columns, line.split(","), strict=False)) for line in lines[1:] if line]
    return {row["svname"]: int(row["addr"].rsplit(":", 1)[1]) for row in rows
            if row["pxname"] == f"svc_{namespace}_{name}" and row["status"] != "MAINT"}


def haproxy_ports(home: Path, name: str, namespace: str = "default") -> set[int]:
    """The replica ports HAProxy's current worker sends the service's requests to (:func:`haproxy_slots`)."""
    return set(haproxy_slots(home, name, namespace).values())


def haproxy_workers(home: Path) -> tuple[list[int], list[int]]:
    """HAProxy's current and old workers (pids), from its master CLI's ``show proc``."""
    current: list[int] = []
    old: list[int] = []
    into = current
    for line in haproxy(home, "show proc").splitlines():
        if line.startswith("# old workers"):
            into = old
        fields = line.split()
        if len(fields) > 1 and fields[1] == "worker":
            into.append(int(fields[0]))
    return current, old


class NamedServer:
    """A plain HTTP/1.1 server (keep-alive, a thread a connection) answering every GET with ``<name> <path>``:
    a stand-in replica, or kfbox, in front of which HAProxy runs."""

    def __init__(self, name: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = f"{name} {self.path}".encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # HAProxy closing its idle connections to us (a worker exiting)

        self.server = Quiet(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def connects(port: int) -> bool:
    """Whether something listens on loopback ``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def ingress_url(home: Path) -> str:
    """The HAProxy ingress URL of the server running on ``home`` (``kfbox up --data-plane haproxy``)."""
    import json

    return str(json.loads((home / "server.json").read_text())["ingress_url"])


def kube_client(server: ServerProcess) -> Any:
    """The upstream ``kubernetes`` client's ApiClient pointed at ``server`` (its APIs are built on it)."""
    from kubernetes import client as k8s

    return k8s.ApiClient(k8s.Configuration(host=server.url))


def refused(call: Callable[[], Any], code: int) -> dict[str, Any]:
    """The Kubernetes Status body of a ``call`` the kubernetes client raised ApiException for, with ``code``.
    (A helper, not a test module: pytest does not rewrite these asserts; each says what it got.)"""
    from kubernetes.client import ApiException

    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == code, info.value.body
    body = json.loads(info.value.body)
    assert (body["kind"], body["status"], body["code"]) == ("Status", "Failure", code), body
    return body  # type: ignore[no-any-return]


def kubectl_env(server: ServerProcess, home: Path) -> dict[str, str]:
    """The environment that points the real kubectl at ``server``: a kubeconfig written by ``kfbox kubeconfig``
    into ``home`` (also kubectl's HOME, so its cache stays there)."""
    written = kfbox("kubeconfig", "-o", str(home / "kubeconfig"), url=server.url)
    assert written.returncode == 0, written.stderr
    return {**os.environ, "KUBECONFIG": str(home / "kubeconfig"), "HOME": str(home)}


def kubectl(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real kubectl (Debian's package; .ci/run installs it): a machine without it fails the test, not skips."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not installed: sudo apt-get install kubectl")
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=timeout)


def kubectl_ok(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    """kubectl's output, after asserting it succeeded."""
    done = kubectl(env, *args, timeout=timeout)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done.stdout


# --- the connection hand-off (--data-plane handoff) ---------------------------------------------------------------
GATEWAY_ROUTE = 'route="/serving/{namespace}/{name}/{path}"'


def handed(client: httpx.Client) -> int:
    """Connections handed to replicas so far, from ``/healthz``'s ``data_plane`` line."""
    line = client.get("/healthz").json()["data_plane"]
    return int(line.split(": ", 1)[1].split()[0])


def answered_by_kfbox(client: httpx.Client) -> float:
    """Gateway requests kfbox's own HTTP stack answered, every method (a replica answering a handed connection
    never adds to it)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
               if line.startswith("kfbox_http_requests_total{") and GATEWAY_ROUTE in line)


def read_replies(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` replies (status, body) read off a raw connection, each framed by its ``content-length``."""
    data, replies = b"", []  # type: tuple[bytes, list[tuple[int, bytes]]]
    while len(replies) < count:
        while b"\r\n\r\n" not in data:
            data += more(sock)
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(v) for k, _, v in (line.partition(b":") for line in lines[1:])
                      if k.lower() == b"content-length")
        while len(rest) < length:
            rest += more(sock)
        replies.append((int(lines[0].split()[1]), rest[:length]))
        data = rest[length:]
    return replies


def more(sock: socket.socket) -> bytes:
    """The next bytes of a raw connection; the connection must not have closed."""
    chunk = sock.recv(65536)
    assert chunk, "the connection closed before every reply came"
    return chunk


def replica_pid(name: str) -> int | None:
    """The pid of the service's replica, by its process title (``kfbox replica default/NAME rev N``)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    title = cmdline.read().split(b"\0")[0].decode()
            except OSError:
                continue
            if title.startswith(f"kfbox replica default/{name} "):
                return int(entry)
    return None
