"""The serving API, shaped like Kubernetes' for ``serving.kserve.io/v1beta1`` InferenceServices.

    GET    /apis/serving.kserve.io/v1beta1/inferenceservices                        all namespaces
    GET    /apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices        list
    POST   /apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices        apply (create or update)
    GET    .../inferenceservices/{name}                                             status
    PUT    .../inferenceservices/{name}                                             apply
    PATCH  .../inferenceservices/{name}                                             JSON merge patch, then apply
    DELETE .../inferenceservices/{name}
    POST   .../inferenceservices/{name}/promote | /rollback                         canary
    GET    .../inferenceservices/{name}/logs?revision=N&tail=200                    replica logs
    POST   /apis/serving.kserve.io/v1beta1/namespaces/{ns}/deployments              deploy a registry version
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from kfbox.errors import InvalidInput, KfboxError
from kfbox.serving.manager import ServingManager
from kfbox.serving.spec import API_VERSION, FORMATS, KIND, NAME_RE, InferenceServiceSpec
from kfbox.serving.status import describe

API = "/apis/serving.kserve.io/v1beta1"
REGISTRY_ANNOTATION = "serving.kfbox.io/registry-inference-service-id"
"""Set by ``kfbox deploy``: the registry's InferenceService, marked UNDEPLOYED on delete."""


class DeployRequest(BaseModel):
    model: str = Field(min_length=1, description="Registered model name")
    version: str | None = Field(default=None, description="Version name; default the latest LIVE one")
    name: str | None = Field(default=None, description="InferenceService name; default the model name")
    format: str = Field(default="sklearn", description="Model format: " + ", ".join(FORMATS))
    minReplicas: int | None = None
    maxReplicas: int | None = None


def serving_router(manager: ServingManager) -> APIRouter:
    router = APIRouter(prefix=API, tags=["serving"])

    def show(namespace: str, name: str) -> dict[str, Any]:
        settings = manager.settings
        return describe(manager.deployment(namespace, name), manager.platform.url, settings.ingress_domain)

    def listing(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": KIND + "List", "items": items}

    @router.get("/inferenceservices")
    async def list_all() -> dict[str, Any]:
        return listing([show(*key) for key in sorted(manager.deployments)])

    @router.get("/namespaces/{namespace}/inferenceservices")
    async def list_namespace(namespace: str) -> dict[str, Any]:
        return listing([show(*key) for key in sorted(manager.deployments) if key[0] == namespace])

    @router.post("/namespaces/{namespace}/inferenceservices")
    async def apply(namespace: str, manifest: dict[str, Any] = Body(...)) -> dict[str, Any]:
        record = await manager.apply(manifest, namespace)
        return show(record.namespace, record.name)

    @router.put("/namespaces/{namespace}/inferenceservices/{name}")
    async def replace(namespace: str, name: str, manifest: dict[str, Any] = Body(...)) -> dict[str, Any]:
        if (manifest.get("metadata") or {}).get("name") != name:
            raise InvalidInput(f"metadata.name must be {name!r}, the name in the URL.")
        record = await manager.apply(manifest, namespace)
        return show(record.namespace, record.name)

    @router.patch("/namespaces/{namespace}/inferenceservices/{name}")
    async def patch(namespace: str, name: str, changes: Any = Body(...)) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) onto the applied manifest, as ``kubectl patch --type merge``."""
        if not isinstance(changes, dict):
            raise InvalidInput("Send a JSON merge patch (an object, Content-Type: application/merge-patch+json); "
                               "JSON Patch lists are not supported.")
        merged = merge_patch(manager.deployment(namespace, name).record.manifest, changes)
        if (merged.get("metadata") or {}).get("name") != name:
            raise InvalidInput(f"metadata.name must stay {name!r}.")
        record = await manager.apply(merged, namespace)
        return show(record.namespace, record.name)

    @router.get("/namespaces/{namespace}/inferenceservices/{name}")
    async def get(namespace: str, name: str) -> dict[str, Any]:
        return show(namespace, name)

    @router.delete("/namespaces/{namespace}/inferenceservices/{name}")
    async def delete(namespace: str, name: str) -> dict[str, Any]:
        manifest = manager.deployment(namespace, name).record.manifest
        await manager.delete(namespace, name)
        registry_id = (manifest.get("metadata", {}).get("annotations") or {}).get(REGISTRY_ANNOTATION)
        registry = manager.platform.services.get("registry")
        if registry_id and registry is not None:  # deployed with `kfbox deploy`: tell the registry
            with contextlib.suppress(KfboxError):
                await asyncio.to_thread(registry.set_deployment_state, registry_id, "UNDEPLOYED")
        return {"kind": "Status", "status": "Success", "details": {"name": name, "namespace": namespace}}

    @router.post("/namespaces/{namespace}/inferenceservices/{name}/promote")
    async def promote(namespace: str, name: str) -> dict[str, Any]:
        await manager.promote(namespace, name)
        return show(namespace, name)

    @router.post("/namespaces/{namespace}/inferenceservices/{name}/rollback")
    async def rollback(namespace: str, name: str) -> dict[str, Any]:
        await manager.rollback(namespace, name)
        return show(namespace, name)

    @router.get("/namespaces/{namespace}/inferenceservices/{name}/logs", response_class=PlainTextResponse)
    async def logs(namespace: str, name: str, revision: int | None = Query(default=None, ge=1),
                   tail: int = Query(default=200, ge=1, le=100_000)) -> str:
        paths = manager.log_paths(namespace, name, revision)
        if not paths:
            return ""
        lines = await asyncio.to_thread(lambda: paths[-1].read_text(errors="replace").splitlines()[-tail:])
        return f"==> {paths[-1].name} <==\n" + "\n".join(lines) + "\n"

    @router.post("/namespaces/{namespace}/deployments")
    async def deploy(namespace: str, request: DeployRequest) -> dict[str, Any]:
        registry = manager.platform.services.get("registry")
        if registry is None:
            raise InvalidInput("This server has no Model Registry; apply an InferenceService manifest instead.")
        name = request.name or request.model.lower().replace("_", "-")
        if not NAME_RE.match(name):
            raise InvalidInput(f"InferenceService name {name!r} is not a DNS label; pass --name.")
        # fails with NotFound (and the next step) when the model or version does not exist
        await asyncio.to_thread(registry.resolve_artifact_uri, request.model, request.version)
        uri = f"model-registry://{request.model}" + (f"/{request.version}" if request.version else "")
        predictor: dict[str, Any] = {"model": {"modelFormat": {"name": request.format}, "storageUri": uri}}
        for field in ("minReplicas", "maxReplicas"):
            if getattr(request, field) is not None:
                predictor[field] = getattr(request, field)
        manifest: dict[str, Any] = {"apiVersion": API_VERSION, "kind": KIND,
                                    "metadata": {"name": name, "namespace": namespace,
                                                 "labels": {"modelregistry/registered-model-name": request.model}},
                                    "spec": {"predictor": predictor}}
        InferenceServiceSpec.parse(manifest)  # refuse bad input before the registry records anything
        recorded = await asyncio.to_thread(registry.record_deployment, name, request.model, request.version,
                                           runtime=f"kfbox-{request.format}")
        manifest["metadata"]["annotations"] = {REGISTRY_ANNOTATION: str(recorded["inferenceService"]["id"])}
        record = await manager.apply(manifest, namespace)
        body = show(record.namespace, record.name)
        body["registry"] = recorded
        return body

    return router


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
