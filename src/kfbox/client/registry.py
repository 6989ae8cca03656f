"""Model Registry calls over one keep-alive connection, speaking the upstream REST API.

:class:`RegistryClient` takes the upstream ``model_registry.ModelRegistry``'s constructor
arguments and offers the same calls for the common path (register, read, update), with the
same attribute names on what they return. It sends the upstream paths and bodies under
``/api/model_registry/v1alpha3``, so it works against kfbox and against a Model Registry
on a cluster. Why not the upstream client: importing it costs about a second, and each of
its calls opens a new connection with a new SSL context; here one ``httpx.Client`` keeps one
connection for every call, and a registration is three requests (four for a new model).

Example::

    registry = RegistryClient("http://127.0.0.1", 8080, author="me")
    registry.register_model("iris", "s3://models/iris", model_format_name="sklearn",
                            model_format_version="1.5", version="v1", metadata={"accuracy": 0.97})
    registry.get_model_version("iris", "v1").custom_properties   # {'accuracy': 0.97}
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import httpx

from kfbox.apis import REGISTRY as PREFIX
from kfbox.client.api import ApiClient, error_from_response
from kfbox.errors import Conflict, InvalidInput, Unavailable

"""What a Model Registry on a cluster serves (kfbox serves it and ``/api/model_registry/v1``)."""
PAGE_SIZE = "1000"
IN_CLUSTER_HOST = "http://model-registry-service.kubeflow.svc.cluster.local"
PropertyValue = str | int | float | bool


def pages(api: ApiClient, path: str, **params: str) -> Iterator[dict[str, Any]]:
    """Every item of a registry list through an :class:`ApiClient`, following ``nextPageToken``."""
    token = ""
    while True:
        page = api.get(path, params={**params, "pageSize": PAGE_SIZE, "nextPageToken": token})
        yield from page["items"]
        token = page["nextPageToken"]
        if not token:
            return


def to_properties(values: Mapping[str, PropertyValue]) -> dict[str, dict[str, Any]]:
    """Plain values as the API's ``customProperties`` (typed ``metadataType`` entries)."""
    wire: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if isinstance(value, bool):
            wire[key] = {"metadataType": "MetadataBoolValue", "bool_value": value}
        elif isinstance(value, int):
            wire[key] = {"metadataType": "MetadataIntValue", "int_value": str(value)}
        elif isinstance(value, float):
            wire[key] = {"metadataType": "MetadataDoubleValue", "double_value": value}
        elif isinstance(value, str):
            wire[key] = {"metadataType": "MetadataStringValue", "string_value": value}
        else:
            raise InvalidInput(f"Property {key!r} is a {type(value).__name__}; use str, int, float or bool.")
    return wire


def from_properties(wire: Mapping[str, Any] | None) -> dict[str, Any]:
    """``customProperties`` as plain values, as the upstream client shows them."""
    plain: dict[str, Any] = {}
    for key, value in (wire or {}).items():
        if "string_value" in value:
            plain[key] = value["string_value"]
        elif "double_value" in value:
            plain[key] = float(value["double_value"])
        elif "bool_value" in value:
            plain[key] = bool(value["bool_value"])
        elif "int_value" in value:
            plain[key] = int(value["int_value"])
    return plain


@dataclasses.dataclass
class Entity:
    """Fields both clients show; ``raw`` is the server's JSON."""

    id: str
    name: str
    description: str | None
    state: str | None
    custom_properties: dict[str, Any]
    raw: dict[str, Any]

    PLURAL = ""

    @classmethod
    def from_wire(cls: type[E], body: dict[str, Any]) -> E:
        names = {f.name for f in dataclasses.fields(cls)} - {"raw", "custom_properties"}
        camel = {name: "".join(w.title() if i else w for i, w in enumerate(name.split("_"))) for name in names}
        fields: dict[str, Any] = {name: body.get(camel[name]) for name in names}
        return cls(**fields, custom_properties=from_properties(body.get("customProperties")), raw=body)


E = TypeVar("E", bound=Entity)


@dataclasses.dataclass
class RegisteredModel(Entity):
    owner: str | None = None
    PLURAL = "registered_models"


@dataclasses.dataclass
class ModelVersion(Entity):
    author: str | None = None
    registered_model_id: str | None = None
    PLURAL = "model_versions"


@dataclasses.dataclass
class ModelArtifact(Entity):
    uri: str | None = None
    model_format_name: str | None = None
    model_format_version: str | None = None
    PLURAL = "model_artifacts"


class RegistryClient:
    """The upstream client's common calls over one keep-alive ``httpx.Client``.

    ``server_address`` and ``port`` are as for ``model_registry.ModelRegistry``
    (``"http://127.0.0.1"``, ``8080``); ``transport`` is for tests (e.g. ``httpx.ASGITransport``).
    """

    def __init__(self, server_address: str, port: int | None = None, *, author: str | None = None,
                 is_secure: bool = True, user_token: str | None = None, prefix: str = PREFIX,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        if "://" not in server_address:
            server_address = ("https://" if is_secure else "http://") + server_address
        self.base_url = f"{server_address.rstrip('/')}:{port}" if port else server_address.rstrip("/")
        self.author = author
        headers = {"Authorization": f"Bearer {user_token}"} if user_token else {}
        self.http = httpx.Client(base_url=self.base_url + prefix.rstrip("/"), headers=headers, timeout=timeout,
                                 verify=is_secure, transport=transport)

    @classmethod
    def from_env(cls, author: str | None = None) -> RegistryClient:
        """The registry a pipeline task is given (``MODEL_REGISTRY_HOST``/``_PORT``/``_TOKEN``), else in-cluster."""
        return cls(os.environ.get("MODEL_REGISTRY_HOST", IN_CLUSTER_HOST),
                   int(os.environ.get("MODEL_REGISTRY_PORT", "8080")), author=author, is_secure=False,
                   user_token=os.environ.get("MODEL_REGISTRY_TOKEN") or None)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- HTTP ----------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        try:
            reply = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"Cannot reach the Model Registry at {self.base_url}: {exc}. "
                              "Check MODEL_REGISTRY_HOST and MODEL_REGISTRY_PORT.") from exc
        if missing_ok and reply.status_code == 404:
            return None
        if reply.status_code >= 400:
            raise error_from_response(reply)
        return reply.json()

    def _find(self, cls: type[E], singular: str, **params: str) -> E | None:
        body = self._call("GET", f"/{singular}", params=params, missing_ok=True)
        return cls.from_wire(body) if body else None

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        token = ""
        while True:
            page = self._call("GET", path, params={"pageSize": PAGE_SIZE, "nextPageToken": token})
            yield from page.get("items") or []
            token = page.get("nextPageToken") or ""
            if not token:
                return

    # -- register ------------------------------------------------------------------------

    def register_model(self, name: str, uri: str, *, model_format_name: str, model_format_version: str,
                       version: str, author: str | None = None, owner: str | None = None,
                       version_description: str | None = None,
                       metadata: Mapping[str, PropertyValue] | None = None,
                       **artifact_fields: str) -> RegisteredModel:
        """The model (created when new), a new version of it and the version's model artifact.

        ``artifact_fields`` are further ModelArtifact fields in the API's spelling
        (``storageKey``, ``serviceAccountName``...). A version that exists already is a
        :class:`~kfbox.errors.Conflict`, as with the upstream client.
        """
        model = self.get_registered_model(name)
        if model is None:
            model = RegisteredModel.from_wire(self._call("POST", "/registered_models",
                                                         json={"name": name, "owner": owner or self.author}))
        body = {"name": version, "registeredModelId": model.id, "author": author or self.author,
                "description": version_description, "customProperties": to_properties(metadata or {})}
        try:
            created = self._call("POST", "/model_versions", json={k: v for k, v in body.items() if v is not None})
        except Conflict as exc:
            raise Conflict(f"Model {name!r} already has a version {version!r}; choose another version name.") from exc
        artifact = {"artifactType": "model-artifact", "name": name, "uri": uri, "modelFormatName": model_format_name,
                    "modelFormatVersion": model_format_version, **artifact_fields}
        self._call("POST", f"/model_versions/{created['id']}/artifacts", json=artifact)
        return model

    # -- read ----------------------------------------------------------------------------

    def get_registered_model(self, name: str) -> RegisteredModel | None:
        return self._find(RegisteredModel, "registered_model", name=name)

    def get_registered_models(self) -> Iterator[RegisteredModel]:
        return (RegisteredModel.from_wire(item) for item in self._pages("/registered_models"))

    def get_model_version(self, name: str, version: str) -> ModelVersion | None:
        """Version ``version`` of model ``name``; None when either is missing."""
        model = self.get_registered_model(name)
        if model is None:
            return None
        return self._find(ModelVersion, "model_version", name=version, parentResourceId=model.id)

    def get_model_versions(self, name: str) -> Iterator[ModelVersion]:
        model = self.get_registered_model(name)
        if model is None:
            return iter(())
        return (ModelVersion.from_wire(item) for item in self._pages(f"/registered_models/{model.id}/versions"))

    def get_model_artifact(self, name: str, version: str) -> ModelArtifact | None:
        """The model artifact of version ``version`` of ``name`` (named like the model, as registered)."""
        found = self.get_model_version(name, version)
        if found is None:
            return None
        for item in self._pages(f"/model_versions/{found.id}/artifacts"):
            if item.get("artifactType") == "model-artifact":
                return ModelArtifact.from_wire(item)
        return None

    # -- update --------------------------------------------------------------------------

    def update(self, entity: E, *, description: str | None = None, state: str | None = None,
               metadata: Mapping[str, PropertyValue] | None = None) -> E:
        """PATCH the given fields (``metadata`` merges into the custom properties); the updated entity."""
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        if state is not None:
            body["state"] = state
        if metadata is not None:
            body["customProperties"] = to_properties({**entity.custom_properties, **metadata})
        if isinstance(entity, ModelArtifact):
            body["artifactType"] = "model-artifact"
        return type(entity).from_wire(self._call("PATCH", f"/{entity.PLURAL}/{entity.id}", json=body))
