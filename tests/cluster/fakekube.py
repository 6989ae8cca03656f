"""A fake Kubernetes API server on loopback (there is no Kubernetes here), and a kubeconfig naming it.

* ``/apis/serving.kserve.io/...`` is proxied to a kfbox server, which serves InferenceServices
  with the Kubernetes API's conventions (201/409, Status bodies, server-side apply): the
  InferenceService part is real kfbox behaviour, not canned;
* server-side apply (``PATCH`` ``application/apply-patch+yaml`` with ``fieldManager``) of any
  other object (AuthorizationPolicy, Secret, ServiceAccount) is kept in :attr:`FakeKube.applied`;
* every call needs ``Authorization: Bearer <token>`` from the kubeconfig (401 otherwise), as an
  API server with a service-account token would.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

KUBE_TOKEN = "fake-kube-token"
KUBE_CONTEXT = "kind-kubeflow"


class FakeKube(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, backend: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend = backend
        self.applied: dict[str, dict] = {}  # path -> object
        self.requests: list[tuple[str, str]] = []
        self.http = httpx.Client(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": KUBE_CONTEXT,
                  "clusters": [{"name": KUBE_CONTEXT, "cluster": {"server": self.url}}],
                  "users": [{"name": KUBE_CONTEXT, "user": {"token": KUBE_TOKEN}}],
                  "contexts": [{"name": KUBE_CONTEXT, "context": {"cluster": KUBE_CONTEXT, "user": KUBE_CONTEXT}}]}
        path.write_text(yaml.safe_dump(config))
        return path


class _Handler(BaseHTTPRequestHandler):
    server: FakeKube

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                          "reason": reason, "code": code})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((method, url.path))
        if self.headers.get("Authorization") != f"Bearer {KUBE_TOKEN}":
            return self._status(401, "Unauthorized", "Unauthorized")
        if url.path.startswith("/apis/serving.kserve.io/"):
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "authorization", "content-length", "connection")}
            reply = self.server.http.request(method, self.server.backend + self.path, content=body, headers=headers)
            data = reply.content
            self.send_response(reply.status_code)
            self.send_header("Content-Type", reply.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if method == "PATCH" and self.headers.get("Content-Type") == "application/apply-patch+yaml":
            if not query.get("fieldManager"):
                return self._status(422, "Invalid", "fieldManager: Required value: is required for apply patch")
            obj = yaml.safe_load(body)
            self.server.applied[url.path] = obj
            return self._send(200, obj)
        if method == "GET" and url.path in self.server.applied:
            return self._send(200, self.server.applied[url.path])
        return self._status(404, "NotFound", f"{url.path} not found")


@contextlib.contextmanager
def running_kube(backend: str) -> Iterator[FakeKube]:
    kube = FakeKube(backend)
    thread = threading.Thread(target=kube.serve_forever, daemon=True)
    thread.start()
    try:
        yield kube
    finally:
        kube.shutdown()
        kube.server_close()
        kube.http.close()
