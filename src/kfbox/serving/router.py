"""The InferenceService API with the Kubernetes API's conventions (``serving.kserve.io/v1beta1``).

    GET    /apis/serving.kserve.io/v1beta1/inferenceservices                        list (all namespaces), watch
    GET    /apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices        list, ?watch=true
    POST   /apis/serving.kserve.io/v1beta1/namespaces/{ns}/inferenceservices        create (201; 409 AlreadyExists)
    GET    .../inferenceservices/{name}                                             get
    PUT    .../inferenceservices/{name}                                             replace (needs resourceVersion)
    PATCH  .../inferenceservices/{name}                                             merge, JSON patch, server-side apply
    DELETE .../inferenceservices/{name}
    GET|PUT|PATCH .../inferenceservices/{name}/status                               the status subresource
    POST   .../inferenceservices/{name}/promote | /rollback                         canary (kfbox)
    GET    .../inferenceservices/{name}/logs?revision=N&tail=200                    replica logs (kfbox)
    POST   /apis/serving.kserve.io/v1beta1/namespaces/{ns}/deployments              deploy a registry version (kfbox)

Errors are ``Status`` objects (:mod:`kfbox.serving.kube_api`); ``resourceVersion`` gives
optimistic concurrency on PUT/PATCH/DELETE; ``dryRun=All`` validates and answers without
storing; ``labelSelector``/``fieldSelector`` filter lists and watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from kfbox.apis import SERVING as API
from kfbox.apis import SERVING_API_VERSION as API_VERSION
from kfbox.errors import InvalidInput, KfboxError
from kfbox.parsing import load_json
from kfbox.serving.kube_api import GROUP, PLURAL, KubeStatus, bad_request, invalid, stale
from kfbox.serving.listing import list_or_watch, list_routes
from kfbox.serving.patch import APPLY, apply_patch, parse_body, patch_type, record_update, server_side_apply
from kfbox.serving.printer import table, wants_table
from kfbox.serving.resources import InferenceServices
from kfbox.serving.spec import FORMATS, KIND, NAME_RE, InferenceServiceSpec
from kfbox.serving.store import SERVER_METADATA, keep_mode

REGISTRY_ANNOTATION = "serving.kfbox.io/registry-inference-service-id"
"""Set by ``kfbox deploy``: the registry's InferenceService, marked UNDEPLOYED on delete."""


class DeployRequest(BaseModel):
    model: str = Field(min_length=1, description="Registered model name")
    version: str | None = Field(default=None, description="Version name; default the latest LIVE one")
    name: str | None = Field(default=None, description="InferenceService name; default the model name")
    format: str = Field(default="sklearn", description="Model format: " + ", ".join(FORMATS))
    minReplicas: int | None = None
    maxReplicas: int | None = None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dry_run(request: Request) -> bool:
    values = request.query_params.getlist("dryRun")
    if any(v != "All" for v in values):
        raise bad_request(f"dryRun {values} is not supported; the only value is All.")
    return bool(values)


def _field_manager(request: Request) -> str:
    manager = request.query_params.get("fieldManager")
    if manager:
        return manager
    agent = request.headers.get("user-agent", "unknown")
    return agent.split("/", 1)[0] or "unknown"  # Kubernetes' default: the User-Agent's product


async def _json_body(request: Request) -> Any:
    try:
        return load_json(await request.body(), "The request body")
    except InvalidInput as exc:
        raise bad_request(exc.message) from exc


def _check_object(body: Any, namespace: str, name: str | None = None) -> dict[str, Any]:
    """kind/apiVersion, and name/namespace matching the URL: 400 BadRequest as an API server answers."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object (an InferenceService)")
    if body.get("apiVersion") != API_VERSION or body.get("kind") != KIND:
        raise bad_request(f"the API version in the data ({body.get('apiVersion')}) and kind ({body.get('kind')}) "
                          f"do not match the expected {API_VERSION} {KIND}")
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise invalid(None, "metadata must be an object", "metadata")
    meta = meta or {}
    if meta.get("namespace") not in (None, "", namespace):
        raise bad_request(f"the namespace of the provided object ({meta.get('namespace')}) does not match the "
                          f"namespace sent on the request ({namespace})")
    if name is not None and meta.get("name") != name:
        raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
    return body


def _parse(manager_resolver: Any, manifest: dict[str, Any], namespace: str) -> InferenceServiceSpec:
    """Schema and value checks: 422 Invalid, naming the object."""
    name = (manifest.get("metadata") or {}).get("name")
    try:
        spec = InferenceServiceSpec.parse(manifest, default_namespace=namespace)
        if spec.predictor.storage_uri:
            manager_resolver.check_scheme(spec.predictor.storage_uri)
    except InvalidInput as exc:
        raise invalid(name if isinstance(name, str) else None, exc.message, getattr(exc, "field", None)) from exc
    return spec


def _written_managed_fields(body: dict[str, Any], current: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``metadata.managedFields`` a client set itself (kubectl moving client-side apply's fields to
    server-side apply does so with a JSON patch), or None when it left them as they were."""
    given = (body.get("metadata") or {}).get("managedFields")
    if not isinstance(given, list) or given == current:
        return None
    if not all(isinstance(m, dict) and isinstance(m.get("manager"), str) for m in given):
        raise invalid((body.get("metadata") or {}).get("name"), "metadata.managedFields: each entry needs a "
                      "manager", "metadata.managedFields")
    return given


def _preview(manifest: dict[str, Any], current: dict[str, Any] | None, generation: int,
             managed: list[dict[str, Any]]) -> dict[str, Any]:
    """What a dry run answers: the object as it would be stored, with the current status if any."""
    body = {k: v for k, v in manifest.items() if k != "status"}
    meta = {k: v for k, v in (manifest.get("metadata") or {}).items() if k not in SERVER_METADATA}
    old = (current or {}).get("metadata") or {}
    meta.update({"uid": old.get("uid") or str(uuid.uuid4()), "generation": generation,
                 "creationTimestamp": old.get("creationTimestamp") or _now()})
    if old.get("resourceVersion"):
        meta["resourceVersion"] = old["resourceVersion"]
    if managed:
        meta["managedFields"] = managed
    body["metadata"] = meta
    if current is not None and "status" in current:
        body["status"] = current["status"]
    return body


def serving_router(res: InferenceServices) -> APIRouter:
    router = APIRouter(prefix=API, tags=["serving"])
    manager = res.manager

    def listing(request: Request, namespace: str | None) -> Any:
        return list_or_watch(request, namespace, res.objects, res.log, res.log.latest, (KIND, API_VERSION))

    list_routes(router, "", "inferenceservices", listing)

    @router.post("/namespaces/{namespace}/inferenceservices", status_code=201)
    async def create(namespace: str, request: Request) -> JSONResponse:
        body = _check_object(await _json_body(request), namespace)
        spec = _parse(manager.resolver, body, namespace)
        managed = record_update([], None, spec.manifest, _field_manager(request))
        if _dry_run(request):
            if (spec.namespace, spec.name) in manager.deployments:
                raise KubeStatus(409, "AlreadyExists", f'{PLURAL}.{GROUP} "{spec.name}" already exists',
                                 name=spec.name)
            return JSONResponse(_preview(spec.manifest, None, 1, managed), status_code=201)
        async with res.lock:
            record = await asyncio.to_thread(res.store.create, spec, managed)
            obj = await res.commit(record, created=True)
        return JSONResponse(obj, status_code=201)

    @router.get("/namespaces/{namespace}/inferenceservices/{name}")
    async def get(namespace: str, name: str, request: Request) -> dict[str, Any]:
        obj = res.get(namespace, name)
        return table([obj]) if wants_table(request.headers.get("accept")) else obj

    @router.get("/namespaces/{namespace}/inferenceservices/{name}/status")
    async def get_status(namespace: str, name: str) -> dict[str, Any]:
        return res.get(namespace, name)

    async def update(request: Request, namespace: str, name: str, manifest: dict[str, Any],
                     precondition: str | None, managed: list[dict[str, Any]]) -> dict[str, Any]:
        spec = _parse(manager.resolver, manifest, namespace)
        current = res.get(namespace, name)
        if _dry_run(request):
            spec = keep_mode(current, spec)
            version = current["metadata"]["resourceVersion"]
            if precondition not in (None, "") and str(precondition) != version:
                raise stale(name, str(precondition), int(version))
            same = (current.get("spec") == spec.manifest.get("spec"))
            return _preview(spec.manifest, current, current["metadata"]["generation"] + (not same), managed)
        async with res.lock:
            record, _ = await asyncio.to_thread(res.store.replace, spec, precondition, managed)
            return await res.commit(record, created=False)

    @router.put("/namespaces/{namespace}/inferenceservices/{name}")
    async def replace(namespace: str, name: str, request: Request) -> dict[str, Any]:
        body = _check_object(await _json_body(request), namespace, name)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if not version:
            raise invalid(name, "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update "
                                "(GET the object and send it back with its resourceVersion)",
                          "metadata.resourceVersion")
        deployment = res.deployment(namespace, name)
        managed = _written_managed_fields(body, deployment.record.managed_fields) or record_update(
            deployment.record.managed_fields, deployment.record.manifest, body, _field_manager(request))
        return await update(request, namespace, name, body, str(version), managed)

    @router.patch("/namespaces/{namespace}/inferenceservices/{name}")
    async def patch(namespace: str, name: str, request: Request) -> Any:
        kind = patch_type(request.headers.get("content-type"))
        body = parse_body(await request.body(), kind)
        if kind == APPLY:
            return await server_apply(request, namespace, name, body)
        current = res.get(namespace, name)
        patched = apply_patch(current, kind, body)
        _check_object(patched, namespace, name)
        version = (patched.get("metadata") or {}).get("resourceVersion")
        sent = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
        changed = version and str(version) != current["metadata"]["resourceVersion"]
        precondition = str(sent or version) if (sent or changed) else None  # a precondition only when sent
        record = res.deployment(namespace, name).record
        managed = _written_managed_fields(patched, record.managed_fields) or record_update(
            record.managed_fields, record.manifest, patched, _field_manager(request))
        return await update(request, namespace, name, patched, precondition, managed)

    async def server_apply(request: Request, namespace: str, name: str, applied: Any) -> Any:
        manager_name = request.query_params.get("fieldManager")
        if not manager_name:
            raise invalid(name, "fieldManager: Required value: is required for apply patch", "fieldManager")
        force = request.query_params.get("force", "").lower() in ("true", "1")
        _check_object(applied, namespace, name)
        precondition = (applied.get("metadata") or {}).get("resourceVersion")
        deployment = manager.deployments.get((namespace, name))
        if deployment is None:
            manifest, managed = server_side_apply(None, applied, [], manager_name, force)
            manifest.setdefault("metadata", {})["namespace"] = namespace
            spec = _parse(manager.resolver, manifest, namespace)
            if _dry_run(request):
                return JSONResponse(_preview(spec.manifest, None, 1, managed), status_code=201)
            async with res.lock:
                record = await asyncio.to_thread(res.store.create, spec, managed)
                return JSONResponse(await res.commit(record, created=True), status_code=201)
        record = deployment.record
        manifest, managed = server_side_apply(record.manifest, applied, record.managed_fields, manager_name, force)
        return await update(request, namespace, name, manifest, str(precondition) if precondition else None,
                            managed)

    @router.put("/namespaces/{namespace}/inferenceservices/{name}/status")
    async def replace_status(namespace: str, name: str, request: Request) -> dict[str, Any]:
        """Status belongs to kfbox's controller: a write is checked (resourceVersion) and the computed status stands."""
        body = _check_object(await _json_body(request), namespace, name)
        current = res.get(namespace, name)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version and str(version) != current["metadata"]["resourceVersion"]:
            raise stale(name, str(version), int(current["metadata"]["resourceVersion"]))
        return current

    @router.patch("/namespaces/{namespace}/inferenceservices/{name}/status")
    async def patch_status(namespace: str, name: str, request: Request) -> dict[str, Any]:
        kind = patch_type(request.headers.get("content-type"))
        body = parse_body(await request.body(), kind)
        current = res.get(namespace, name)
        if kind != APPLY:
            patched = apply_patch(current, kind, body)
            version = (patched.get("metadata") or {}).get("resourceVersion")
            if version and str(version) != current["metadata"]["resourceVersion"]:
                raise stale(name, str(version), int(current["metadata"]["resourceVersion"]))
        return current

    @router.delete("/namespaces/{namespace}/inferenceservices/{name}")
    async def delete(namespace: str, name: str, request: Request) -> dict[str, Any]:
        current = res.get(namespace, name)
        raw = await request.body()
        options: Any = {}
        with contextlib.suppress(InvalidInput):
            options = load_json(raw) if raw else {}
        version = ((options.get("preconditions") or {}) if isinstance(options, dict) else {}).get("resourceVersion")
        dry = _dry_run(request) or "All" in ((options.get("dryRun") or []) if isinstance(options, dict) else [])
        meta = current["metadata"]
        if version and str(version) != meta["resourceVersion"]:
            raise stale(name, str(version), int(meta["resourceVersion"]))
        if not dry:
            async with res.lock:
                deleted = await manager.delete(namespace, name, version)
                res.emit("DELETED", {**current, "metadata": {**meta, "resourceVersion": str(deleted)}})
            registry_id = (meta.get("annotations") or {}).get(REGISTRY_ANNOTATION)
            registry = manager.platform.services.registry
            if registry_id and registry is not None:  # deployed with `kfbox deploy`: tell the registry
                with contextlib.suppress(KfboxError):
                    await asyncio.to_thread(registry.set_deployment_state, registry_id, "UNDEPLOYED")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "namespace": namespace, "group": GROUP, "kind": PLURAL,
                            "uid": meta["uid"]}}

    @router.post("/namespaces/{namespace}/inferenceservices/{name}/promote")
    async def promote(namespace: str, name: str) -> dict[str, Any]:
        res.deployment(namespace, name)
        async with res.lock:
            await manager.promote(namespace, name)
            obj = res.get(namespace, name)
            res.emit("MODIFIED", obj)
        return obj

    @router.post("/namespaces/{namespace}/inferenceservices/{name}/rollback")
    async def rollback(namespace: str, name: str) -> dict[str, Any]:
        res.deployment(namespace, name)
        async with res.lock:
            await manager.rollback(namespace, name)
            obj = res.get(namespace, name)
            res.emit("MODIFIED", obj)
        return obj

    @router.get("/namespaces/{namespace}/inferenceservices/{name}/logs", response_class=PlainTextResponse)
    async def logs(namespace: str, name: str, revision: int | None = Query(default=None, ge=1),
                   tail: int = Query(default=200, ge=1, le=100_000)) -> str:
        res.deployment(namespace, name)
        paths = manager.log_paths(namespace, name, revision)
        if not paths:
            return ""
        lines = await asyncio.to_thread(lambda: paths[-1].read_text(errors="replace").splitlines()[-tail:])
        return f"==> {paths[-1].name} <==\n" + "\n".join(lines) + "\n"

    @router.post("/namespaces/{namespace}/deployments")
    async def deploy(namespace: str, request: DeployRequest) -> dict[str, Any]:
        registry = manager.platform.services.registry
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
        async with res.lock:
            existed = (namespace, name) in manager.deployments
            record = await manager.apply(manifest, namespace)
            body = res.get(record.namespace, record.name)
            res.emit("MODIFIED" if existed else "ADDED", body)
        body["registry"] = recorded
        return body

    return router

