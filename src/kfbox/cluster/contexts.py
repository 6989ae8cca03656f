"""Saved remote targets (``kfbox context add|use|list|remove``), in ``<home>/contexts.json`` (mode 0600).

A context is a Kubeflow cluster reached through its Istio gateway (``kind="kubeflow"``), or
another kfbox server standing in for one (``kind="kfbox"``). It holds what the laptop needs to
reach the cluster's APIs and its S3 store; secrets stay in the file (like a kubeconfig) and
out of every ``repr`` and listing.

Example::

    store = ContextStore(home)
    store.add(Context(name="kind", host="http://127.0.0.1:8080", auth="dex", username="user@example.com",
                      password="..."))
    store.use("kind")
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kfbox.cluster.names import check_namespace
from kfbox.errors import InvalidInput, NotFound
from kfbox.names import check_dns1123_label

AUTHS = ("dex", "token", "none")
LOCAL = "local"
"""Reserved: the local kfbox server (``kfbox context use local``, ``--context local``)."""
KINDS = ("kubeflow", "kfbox")
SECRET_FIELDS = ("password", "token", "s3_secret_key")


@dataclasses.dataclass
class Context:
    name: str
    host: str
    auth: str = "dex"
    kind: str = "kubeflow"
    namespace: str = "kubeflow-user-example-com"
    username: str | None = "user@example.com"
    password: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)
    kube_context: str | None = None
    """kubectl context for applying InferenceServices (``kind-kubeflow``); None: the API at ``host`` (kfbox)."""
    ingress_domain: str = "example.com"
    s3_endpoint: str | None = None
    """The cluster's S3 as this machine reaches it (``http://127.0.0.1:8333`` after ``expose s3``)."""
    s3_cluster_endpoint: str = "seaweedfs.kubeflow:8333"
    """The same store as pods reach it (KServe's storage initializer)."""
    s3_bucket: str = "mlpipeline"
    s3_prefix: str = "private/{namespace}/models"
    """Where promoted files go: inside what a Kubeflow profile's S3 keys may write."""
    s3_access_key: str | None = None
    s3_secret_key: str | None = dataclasses.field(default=None, repr=False)

    def validate(self) -> Context:
        check_dns1123_label(self.name, kind="Context")
        if self.name == LOCAL:
            raise InvalidInput(f"Context name {LOCAL!r} is reserved for the local kfbox server; choose another")
        parts = urlsplit(self.host)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(f"Context host {self.host!r} must be an http(s) URL, e.g. http://127.0.0.1:8080")
        self.host = self.host.rstrip("/")
        if self.auth not in AUTHS:
            raise InvalidInput(f"Auth {self.auth!r} is not one of {', '.join(AUTHS)}")
        if self.kind not in KINDS:
            raise InvalidInput(f"Context kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.auth == "token" and not self.token:
            raise InvalidInput("--auth token needs --token (e.g. from: kfbox cluster creds token)")
        if self.auth == "dex" and not (self.username and self.password):
            raise InvalidInput("--auth dex needs --username and --password (see: kfbox cluster creds dex)")
        check_namespace(self.namespace)
        return self

    def public(self) -> dict[str, Any]:
        """For listings: secrets shown only as set or not."""
        data = dataclasses.asdict(self)
        for key in SECRET_FIELDS:
            data[key] = "(set)" if data[key] else None
        return data


class ContextStore:
    def __init__(self, home: Path) -> None:
        self.path = home / "contexts.json"

    def _read(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {"current": None, "contexts": {}}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(data, file, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def add(self, context: Context, *, make_current: bool = True) -> Context:
        context.validate()
        data = self._read()
        data["contexts"][context.name] = dataclasses.asdict(context)
        if make_current or not data.get("current"):
            data["current"] = context.name
        self._write(data)
        return context

    def use(self, name: str) -> Context | None:
        """Make NAME current; ``local`` makes the local server the target again (returns None)."""
        context = None if name == LOCAL else self.get(name)
        data = self._read()
        data["current"] = None if name == LOCAL else name
        self._write(data)
        return context

    def remove(self, name: str) -> None:
        data = self._read()
        self.get(name)
        del data["contexts"][name]
        if data.get("current") == name:
            data["current"] = None
        self._write(data)

    def current(self) -> str | None:
        current = self._read().get("current")
        return str(current) if current else None

    def list(self) -> list[Context]:
        return [Context(**value) for _, value in sorted(self._read()["contexts"].items())]

    def get(self, name: str | None = None) -> Context:
        data = self._read()
        name = name or data.get("current")
        if not name:
            raise NotFound("No context chosen. Add one with: kfbox context add NAME --host URL")
        try:
            return Context(**data["contexts"][name])
        except KeyError:
            known = ", ".join(sorted(data["contexts"])) or "none"
            raise NotFound(f"No context {name!r} (known: {known}; {LOCAL!r} is the local server). "
                           f"Add it with: kfbox context add {name} --host URL") from None
