"""How client commands reach a server: address resolution and error translation.

The address is ``--url``, else ``KFBOX_URL``, else what ``kfbox up`` recorded in the
home; the token is ``--token``, else ``KFBOX_TOKEN``.

Example::

    api = ApiClient.connect(url=None, home=None)
    api.get("/api/model_registry/v1alpha3/registered_models")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from kfbox.config import default_home
from kfbox.errors import (
    Conflict,
    InvalidInput,
    KfboxError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    Unsupported,
)
from kfbox.server.record import read_record

_BY_STATUS: dict[int, type[KfboxError]] = {400: InvalidInput, 401: Unauthorized, 404: NotFound, 409: Conflict,
                                           413: PayloadTooLarge, 422: InvalidInput, 501: Unsupported,
                                           503: Unavailable}


def resolve_url(url: str | None = None, home: Path | None = None) -> str:
    url = url or os.environ.get("KFBOX_URL")
    if url:
        return url.rstrip("/")
    home = home or default_home()
    record = read_record(home)
    if record is None:
        raise Unavailable(f"No kfbox server is running for home {home}. "
                          "Start one with: kfbox up --detach "
                          "(or pass --url / set KFBOX_URL; a cluster: --context NAME).")
    return str(record["url"])


class ApiClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    @classmethod
    def connect(cls, url: str | None = None, home: Path | None = None, token: str | None = None,
                timeout: float = 30.0) -> ApiClient:
        return cls(resolve_url(url, home), token or os.environ.get("KFBOX_TOKEN"), timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"Cannot reach the kfbox server at {self.base_url}: {exc}. "
                              "Is it running? Check with: kfbox status") from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def health(self) -> dict[str, Any]:
        """The server's ``/healthz`` body: ``status``, ``version`` and its extras (with the HAProxy data plane
        ``data_plane``, its state in a line, ``data_plane_state`` and ``ingress_url``); {} where no kfbox
        ``/healthz`` answers."""
        try:
            body = self.get("/healthz")
        except KfboxError:
            return {}
        return body if isinstance(body, dict) else {}

    def inference_base(self) -> str:
        """Where an InferenceService's clients send requests: the ingress port while the server's HAProxy data
        plane is up (as the dashboard's snippets do; it hands what it does not route to kfbox), else this
        server's own port (its gateway)."""
        health = self.health()
        ingress = health.get("ingress_url")
        if isinstance(ingress, str) and health.get("data_plane_state") == "up":
            return ingress.rstrip("/")
        return self.base_url.rstrip("/")

    def close(self) -> None:
        self.http.close()


def error_from_response(response: httpx.Response) -> KfboxError:
    """Turn an error reply of any of our APIs into the matching :class:`KfboxError`."""
    try:
        body = response.json()
        message = body.get("message") or body.get("error") or response.text
    except (ValueError, AttributeError):
        message = response.text or response.reason_phrase
    cls = _BY_STATUS.get(response.status_code, KfboxError)
    return cls(str(message))
