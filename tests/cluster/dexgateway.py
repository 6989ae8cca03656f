"""A loopback stand-in for a Kubeflow gateway: oauth2-proxy + Dex's login pages + Istio routing.

Our own small server (no Kubernetes here), shaped on what the real pieces answer:
* ``GET /`` without a session: oauth2-proxy's sign-in page (403, ``skip_provider_button=false``);
* ``/oauth2/start?rd=`` sets the CSRF cookie and redirects to ``/dex/auth``, which (one
  connector) redirects to ``/dex/auth/local`` and on to the form at ``/dex/auth/local/login``;
* a right password redirects to ``/dex/approval`` then ``/oauth2/callback?code=&state=``,
  which checks the CSRF cookie and sets ``oauth2_proxy_kubeflow``; a wrong one re-renders
  the form (200, no redirect), as Dex does;
* API paths without a session or a valid bearer get 401 (oauth2-proxy's ``api_routes``);
* ``/api/model_registry/v1alpha3``, ``/pipeline``, ``/apis`` are proxied to a backend (a
  kfbox server standing in for the cluster); ``/api/model_registry/v1`` is 404, as on a
  26.03 cluster;
* ``POST /v1/models/NAME:predict`` answers only for ``Host: NAME.NS.example.com``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

USER, PASSWORD, TOKEN = "user@example.com", "a-better-pass", "sa-token-default-editor"
API_PREFIXES = ("/api/", "/apis/", "/pipeline/apis/", "/v1/models/")


class Gateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, backend: str | None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.backend = backend
        self.sessions: set[str] = set()
        self.pending: dict[str, str] = {}  # Dex auth request id -> oauth2-proxy state
        self.codes: dict[str, str] = {}
        self.logins = 0
        self.hosts: list[str] = []
        self.http = httpx.Client(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def expire_sessions(self) -> None:
        self.sessions.clear()


class Handler(BaseHTTPRequestHandler):
    server: Gateway

    def log_message(self, format: str, *args: object) -> None:
        pass

    # --- helpers
    def _cookies(self) -> dict[str, str]:
        pairs = (part.strip().split("=", 1) for part in self.headers.get("Cookie", "").split(";") if "=" in part)
        return {name: value for name, value in pairs}

    def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None,
              content_type: str = "text/html") -> None:
        data = body.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _redirect(self, location: str, status: int = 302, cookie: str | None = None) -> None:
        headers = {"Location": location}
        if cookie:
            headers["Set-Cookie"] = cookie
        self._send(status, "", headers)

    def _authenticated(self) -> bool:
        if self._cookies().get("oauth2_proxy_kubeflow") in self.server.sessions:
            return True
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # --- routing
    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        path = url.path
        if path == "/oauth2/start":
            state = secrets.token_hex(8)
            dex = "/dex/auth?" + urlencode({"client_id": "kubeflow-oidc-authservice", "response_type": "code",
                                            "redirect_uri": "/oauth2/callback", "state": state,
                                            "scope": "openid profile email groups"})
            return self._redirect(dex, cookie=f"_oauth2_proxy_csrf={state}; Path=/; HttpOnly")
        if path == "/dex/auth":
            request_id = secrets.token_hex(6)
            self.server.pending[request_id] = query["state"]
            return self._redirect(f"/dex/auth/local?req={request_id}")
        if path == "/dex/auth/local":
            return self._redirect(f"/dex/auth/local/login?back=&state={query['req']}")
        if path == "/dex/auth/local/login":
            return self._login(method, query)
        if path == "/dex/approval":
            code = secrets.token_hex(6)
            self.server.codes[code] = self.server.pending.pop(query["req"])
            return self._redirect("/oauth2/callback?" + urlencode({"code": code, "state": self.server.codes[code]}),
                                  status=303)
        if path == "/oauth2/callback":
            state = self.server.codes.pop(query.get("code", ""), None)
            if state is None or self._cookies().get("_oauth2_proxy_csrf") != state or query.get("state") != state:
                return self._send(403, "Unable to find a valid CSRF token")
            session = secrets.token_hex(16)
            self.server.sessions.add(session)
            return self._redirect("/", cookie=f"oauth2_proxy_kubeflow={session}; Path=/; HttpOnly")
        if not self._authenticated():
            if path.startswith(API_PREFIXES):
                return self._send(401, "Unauthorized", content_type="text/plain")
            return self._send(403, "<html><body><a href='/oauth2/start?rd=/'>Sign in</a></body></html>")
        if path.startswith("/api/model_registry/v1/"):
            return self._send(404, "", content_type="text/plain")  # a 26.03 cluster serves only v1alpha3
        if path.startswith("/v1/models/") and method == "POST":
            return self._predict(path)
        if path.startswith(("/api/model_registry/v1alpha3/", "/pipeline/", "/apis/")) and self.server.backend:
            return self._proxy(method)
        if path == "/":
            return self._send(200, "<html><body>Kubeflow Central Dashboard</body></html>")
        return self._send(404, "not found", content_type="text/plain")

    def _login(self, method: str, query: dict[str, str]) -> None:
        form = "<form method='post'><input name='login'><input name='password' type='password'></form>"
        if method == "GET":
            return self._send(200, form)
        fields = {key: values[0] for key, values in parse_qs(self._body().decode()).items()}
        if fields.get("login") != USER or fields.get("password") != PASSWORD:
            return self._send(200, "Invalid Email Address and password" + form)
        self.server.logins += 1
        return self._redirect(f"/dex/approval?req={query['state']}", status=303)

    def _predict(self, path: str) -> None:
        name = path.removeprefix("/v1/models/").removesuffix(":predict")
        host = self.headers.get("Host", "")
        self.server.hosts.append(host)
        self._body()
        if host != f"{name}.kubeflow-user-example-com.example.com":
            return self._send(404, "", content_type="text/plain")  # Istio: no route for this Host
        return self._send(200, json.dumps({"predictions": [1], "host": host}), content_type="application/json")

    def _proxy(self, method: str) -> None:
        body = self._body()
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "cookie", "authorization", "content-length", "connection")}
        response = self.server.http.request(method, f"{self.server.backend}{self.path}", content=body,
                                            headers=headers)
        self._send(response.status_code, response.text, content_type=response.headers.get("content-type", "text/plain"))


@contextlib.contextmanager
def running_gateway(backend: str | None = None) -> Iterator[Gateway]:
    gateway = Gateway(backend)
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        gateway.shutdown()
        gateway.server_close()
        gateway.http.close()
