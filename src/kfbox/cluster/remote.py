"""Talking to a Kubeflow cluster from the laptop: Dex login, KFP, the Model Registry, predictions.

* **Auth.** ``dex``: the browser flow of upstream's ``tests/dex_login_test.py`` and the KFP
  docs ("Kubeflow Platform - outside the cluster"): GET the gateway, start oauth2-proxy's flow,
  post the Dex login form, follow the redirects back; the session cookie
  (``oauth2_proxy_kubeflow``) is cached in ``<home>/contexts/<name>.cookies`` (0600) and
  renewed when the gateway answers 401. ``token``: ``Authorization: Bearer`` (a service-account
  token works with oauth2-proxy's ``m2m-dex-and-kind`` overlay).
* **Model Registry.** Clusters (26.03) serve ``/api/model_registry/v1alpha3``; the Python
  client 0.3.15+ speaks ``/v1``. :meth:`Remote.registry_prefix` probes both explicitly and
  says which one the cluster serves; kfbox's own calls follow it.
* **Predictions** go to the gateway with the ``Host`` header KServe routes on:
  ``NAME.NS.DOMAIN`` (Knative) or ``NAME-NS.DOMAIN`` (Standard).

Example::

    remote = Remote(ContextStore(home).get("kind"), home)
    remote.registry_prefix()                     # '/api/model_registry/v1alpha3'
    remote.kfp_client().list_experiments()
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from kfbox.apis import REGISTRY, REGISTRY_V1
from kfbox.client import ApiClient
from kfbox.cluster.contexts import Context
from kfbox.errors import KfboxError, NotFound, Unauthorized, Unavailable

SESSION_COOKIE = "oauth2_proxy_kubeflow"
REGISTRY_PREFIXES = (REGISTRY, REGISTRY_V1)


def dex_login(host: str, username: str, password: str, *, auth_type: str = "local", timeout: float = 30.0,
              verify: bool = True) -> dict[str, str]:
    """The gateway's session cookies after a Dex password login ({} when the gateway is unsecured)."""
    with httpx.Client(follow_redirects=True, timeout=timeout, verify=verify) as http:
        try:
            response = http.get(host + "/")
            if response.status_code in (401, 403):
                # oauth2-proxy's sign-in page; its flow starts at /oauth2/start?rd=<path>
                start = urlsplit(str(response.url))._replace(path="/oauth2/start",
                                                               query=urlencode({"rd": urlsplit(host + "/").path}))
                response = http.get(start.geturl())
            if response.status_code not in (200, 302):
                raise Unavailable(f"Dex login: GET {response.url} answered {response.status_code}")
            if not response.history:
                return {}  # no redirect to Dex: the endpoint is not secured
            url = urlsplit(str(response.url))
            if url.path.endswith("/auth"):
                url = url._replace(path=re.sub(r"/auth$", f"/auth/{auth_type}", url.path))
            if re.search(r"/auth/.*/login$", url.path):
                login_url = url.geturl()
            else:
                response = http.get(url.geturl())
                if response.status_code != 200:
                    raise Unavailable(f"Dex login: GET {url.geturl()} answered {response.status_code}")
                login_url = str(response.url)
            response = http.post(login_url, data={"login": username, "password": password})
            if response.status_code == 200 and not response.history:
                raise Unauthorized(f"Dex refused the login of {username!r} at {host}: wrong user or password. "
                                   "The kind install's password: kfbox cluster creds dex")
            if response.status_code != 200:
                raise Unavailable(f"Dex login: POST {login_url} answered {response.status_code}")
            if urlsplit(str(response.url)).path.endswith("/approval"):
                response = http.post(str(response.url), data={"approval": "approve"})
        except httpx.TransportError as exc:
            raise Unavailable(f"Cannot reach the Kubeflow gateway at {host}: {exc}. "
                              "Is it port-forwarded? Run: kfbox cluster expose dashboard") from exc
        cookies = {cookie.name: cookie.value for cookie in http.cookies.jar if cookie.value is not None}
    if SESSION_COOKIE not in cookies and not any(name.startswith(SESSION_COOKIE) for name in cookies):
        raise Unauthorized(f"Dex login at {host} ended without the {SESSION_COOKIE} session cookie "
                           f"(got {sorted(cookies) or 'none'}).")
    return cookies


def cookie_header(cookies: dict[str, str]) -> str:
    """``k=v; k2=v2``: the form ``kfp.Client(cookies=...)`` takes."""
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


def installed_client_prefix() -> str | None:
    """The REST prefix the installed ``model-registry`` Python client speaks (0.3.15+: ``/v1``)."""
    try:
        import mr_openapi.api.model_registry_service_api as generated
    except ImportError:
        return None
    text = Path(generated.__file__).read_text(errors="replace")
    found = re.search(r"/api/model_registry/(v1alpha3|v1)/", text)
    return f"/api/model_registry/{found[1]}" if found else None


class Remote:
    """One remote target's authenticated clients (kfbox's :class:`ApiClient`, kfp's Client)."""

    def __init__(self, context: Context, home: Path, timeout: float = 60.0) -> None:
        self.context = context
        self.home = home
        self.timeout = timeout
        self._prefix: str | None = None

    # --- auth
    def _cookie_file(self) -> Path:
        return self.home / "contexts" / f"{self.context.name}.cookies"

    def cookies(self, *, fresh: bool = False) -> dict[str, str]:
        if self.context.auth != "dex":
            return {}
        path = self._cookie_file()
        if not fresh:
            try:
                return dict(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass
        cookies = dex_login(self.context.host, self.context.username or "", self.context.password or "",
                            timeout=self.timeout)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(cookies, file)
        return cookies

    def api(self, *, fresh: bool = False) -> ApiClient:
        token = self.context.token if self.context.auth == "token" else None
        api = ApiClient(self.context.host, token, timeout=self.timeout)
        for name, value in self.cookies(fresh=fresh).items():
            api.http.cookies.set(name, value)
        return api

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; a 401 with a cached Dex session logs in again once (sessions expire after 24 h)."""
        try:
            return self.api().request(method, path, **kwargs)
        except Unauthorized:
            if self.context.auth != "dex":
                raise
            return self.api(fresh=True).request(method, path, **kwargs)

    # --- Model Registry
    def registry_prefix(self) -> str:
        """The Model Registry REST prefix the target serves, probed (v1alpha3 first: what clusters serve)."""
        if self._prefix:
            return self._prefix
        tried = []
        for prefix in REGISTRY_PREFIXES:
            try:
                page = self.call("GET", f"{prefix}/registered_models", params={"pageSize": "1"})
            except NotFound:
                tried.append(f"{prefix} (404)")
                continue
            if isinstance(page, dict) and "items" in page:
                self._prefix = prefix
                return prefix
            tried.append(f"{prefix} (not a registry answer)")
        raise NotFound(f"No Model Registry at {self.context.host}: tried {', '.join(tried)}. Install it with "
                       "kfbox cluster up --components model-registry (its options/istio adds the gateway route).")

    def registry_versions(self) -> dict[str, Any]:
        """What the target serves vs what the installed Python client speaks (the version skew, explicit)."""
        served = self.registry_prefix()
        client = installed_client_prefix()
        return {"served": served, "python_client": client, "compatible": client == served,
                "note": None if client == served else
                f"the installed model-registry client speaks {client}; this target serves {served}: "
                "use kfbox's commands (they follow the served prefix) or a client matching the server"}

    # --- Pipelines
    def kfp_client(self) -> Any:
        """``kfp.Client`` through the gateway, authenticated as the KFP SDK docs describe."""
        import kfp

        host = self.context.host + ("/pipeline" if self.context.kind == "kubeflow" else "")
        if self.context.auth == "token":
            return kfp.Client(host=host, existing_token=self.context.token, namespace=self.context.namespace)
        cookies = cookie_header(self.cookies()) if self.context.auth == "dex" else None
        return kfp.Client(host=host, cookies=cookies, namespace=self.context.namespace)

    # --- predictions
    def service_host(self, name: str, mode: str = "Knative", namespace: str | None = None) -> str:
        namespace = namespace or self.context.namespace
        domain = self.context.ingress_domain
        return f"{name}.{namespace}.{domain}" if mode == "Knative" else f"{name}-{namespace}.{domain}"

    def predict(self, name: str, payload: dict[str, Any], mode: str = "Knative",
                namespace: str | None = None) -> Any:
        """V1 ``:predict`` through the gateway, routed by the Host header KServe expects."""
        headers = {"Host": self.service_host(name, mode, namespace)}
        try:
            return self.call("POST", f"/v1/models/{name}:predict", json=payload, headers=headers)
        except KfboxError as exc:
            if "RBAC: access denied" in exc.message:
                raise Unauthorized(f"The mesh denied the call to {name}: it needs an ALLOW AuthorizationPolicy "
                                   "(kfbox promote --deploy applies one).") from exc
            raise
