"""Models (the Model Registry): models, versions with metrics and properties, the run that produced
each version, archive/restore, and "deploy this version" (a prefilled InferenceService form that
POSTs to the serving API's ``deployments`` endpoint, the same call as ``kfbox deploy``).

A version's producing run is found by the upstream convention (the model artifact's
``modelSourceKind == "kfp"`` and ``modelSourceId``), a ``kfp_run_id``/``run_id`` property, or the
pipeline artifact whose URI is the model artifact's URI (one query for the whole page).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kfbox.apis import REGISTRY as MR
from kfbox.apis import SERVING as SERVING_API
from kfbox.errors import InvalidInput, KfboxError, NotFound, Unavailable
from kfbox.pipelines.tables import Artifact
from kfbox.registry import store
from kfbox.registry.tables import Resource
from kfbox.server.platform import Platform, required
from kfbox.serving.spec import FORMATS
from kfbox.ui import csrf
from kfbox.ui.render import Pages

RUN_PROPERTIES = ("kfp_run_id", "run_id", "pipeline_run_id", "runId")


def plain(custom: dict[str, Any]) -> dict[str, Any]:
    """Registry custom properties ({"metadataType", "double_value": 0.9}) as plain values."""
    out: dict[str, Any] = {}
    for key, value in (custom or {}).items():
        if not isinstance(value, dict):
            out[key] = value
            continue
        for field in ("double_value", "int_value", "string_value", "bool_value", "struct_value"):
            if field in value:
                out[key] = value[field]
                break
    return out


def dns_name(name: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label if label and label[0].isalpha() else f"m-{label}"[:63]


async def call_api(platform: Platform, method: str, path: str, body: Any = None,
                   content_type: str = "application/json", missing_ok: bool = False) -> dict[str, Any]:
    """Call kfbox's own HTTP API (so the dashboard's actions take exactly the API's path)."""
    import httpx  # lazily: ~70 ms of CPU at server start otherwise
    headers = {"Content-Type": content_type}
    if platform.settings.token:
        headers["Authorization"] = f"Bearer {platform.settings.token}"
    try:
        async with httpx.AsyncClient(base_url=platform.url, timeout=60) as client:
            response = await client.request(method, path, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise Unavailable(f"The serving API did not answer: {exc}.") from exc
    data = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if missing_ok and response.status_code == 404:
        return {}
    if response.status_code >= 400:
        message = data.get("message") or data.get("error") or response.text
        error = KfboxError(str(message))
        error.status_code = response.status_code
        raise error
    return data if isinstance(data, dict) else {}


def _compare(items: list[dict[str, Any]], picked: list[str]) -> dict[str, Any] | None:
    """Chosen versions' properties side by side, the best metric starred (as for runs)."""
    chosen = [i for i in items if str(i["id"]) in picked]
    if len(chosen) < 2:
        return None
    from kfbox.ui.compare import _rows

    return {"versions": [c["name"] for c in chosen], "rows": _rows([c["properties"] for c in chosen], True, True)}


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def registry() -> Any:
        return required(platform.services.registry, "registry")

    @router.get("/models")
    @router.get("/models.json")
    @pages.page("models.html", "Models")
    def models(request: Request, q: str = "", archived: bool = False, page: int = Query(default=0, ge=0),
               page_size: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
        with platform.db.read() as s:
            query = select(Resource).where(Resource.family == "registered_model",
                                           Resource.state == ("ARCHIVED" if archived else "LIVE"))
            if q:
                query = query.where(Resource.name.contains(q, autoescape=True))
            total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = list(s.scalars(query.order_by(Resource.created_ms.desc(), Resource.id.desc())
                                  .offset(page * page_size).limit(page_size)))
            ids = [r.id for r in rows]
            counts = dict(s.execute(select(Resource.scope, func.count()).where(
                Resource.family == "model_version", Resource.scope.in_(ids)).group_by(Resource.scope)).all())
            latest = {}
            for scope, name in s.execute(select(Resource.scope, Resource.name).where(
                    Resource.family == "model_version", Resource.scope.in_(ids)).order_by(Resource.created_ms)):
                latest[scope] = name
        items = [{"id": r.id, "name": r.name, "description": r.attrs.get("description", ""), "state": r.state,
                  "owner": r.attrs.get("owner", ""), "created_ms": r.created_ms, "versions": counts.get(r.id, 0),
                  "latest_version": latest.get(r.id, "")} for r in rows]
        more = (page + 1) * page_size < total
        return {"models": items, "total": total, "q": q, "archived": archived,
                "next_url": f"/models?page={page + 1}&q={q}" + ("&archived=1" if archived else "") if more else ""}

    @router.get("/models/register")
    @router.get("/models/register.json")
    @pages.page("model_register.html", "Register a model")
    def register_form(request: Request) -> dict[str, Any]:
        return {"formats": FORMATS, "error": "", "values": {}}

    @router.post("/models/register")
    @pages.action
    async def register(request: Request) -> Response:
        """Model, version and model artifact through the Model Registry API (as its client would)."""
        form = await csrf.checked_form(request)
        values = {k: str(form.get(k) or "").strip() for k in ("name", "version", "uri", "format", "description")}
        try:
            if not values["name"] or not values["version"] or not values["uri"]:
                raise InvalidInput("Name, version and URI are all needed.")
            found = await call_api(platform, "GET", f"{MR}/registered_model?name={quote(values['name'])}",
                                   missing_ok=True)
            model = found or await call_api(platform, "POST", f"{MR}/registered_models",
                                            {"name": values["name"], "description": values["description"]})
            version = await call_api(platform, "POST", f"{MR}/model_versions",
                                     {"name": values["version"], "registeredModelId": model["id"],
                                      "description": values["description"]})
            await call_api(platform, "POST", f"{MR}/model_versions/{version['id']}/artifacts",
                           {"artifactType": "model-artifact", "name": f"{values['name']}-{values['version']}",
                            "uri": values["uri"], "modelFormatName": values["format"] or "sklearn"})
        except KfboxError as exc:
            data = {"formats": FORMATS, "error": exc.message, "values": values}
            return pages.render(request, "model_register.html", data, "Register a model", status=exc.status_code)
        return pages.redirect(f"/models/{model['id']}")

    @router.get("/models/{model_id}")
    @router.get("/models/{model_id}.json")
    @pages.page("model.html", lambda d: d["model"]["name"])
    def model(request: Request, model_id: str, deploy: str = "",
              compare: list[str] = Query(default=[])) -> dict[str, Any]:
        with platform.db.read() as s:
            row = _model_row(s, model_id)
            versions = list(s.scalars(select(Resource).where(Resource.family == "model_version",
                                                             Resource.scope == row.id)
                                      .order_by(Resource.created_ms.desc(), Resource.id.desc()).limit(500)))
            vids = [v.id for v in versions]
            arts = list(s.scalars(select(Resource).where(Resource.family == "artifact",
                                                         Resource.kind == "model-artifact",
                                                         Resource.scope.in_(vids)).order_by(Resource.id)))
            by_version = {a.scope: a for a in arts}
            uris = [a.attrs.get("uri") for a in arts if a.attrs.get("uri")]
            producers = dict(s.execute(select(Artifact.uri, Artifact.run_id).where(Artifact.uri.in_(uris))).all())
            services = list(s.scalars(select(Resource).where(Resource.family == "inference_service")))
        serving = {}
        for svc in services:
            if str(svc.attrs.get("registeredModelId")) == str(row.id) and svc.attrs.get("desiredState") == "DEPLOYED":
                serving[str(svc.attrs.get("modelVersionId"))] = svc.name
        items = []
        for v in versions:
            art = by_version.get(v.id)
            props = plain(v.custom)
            attrs = art.attrs if art is not None else {}
            run_id = next((str(props[k]) for k in RUN_PROPERTIES if props.get(k)), "")
            if not run_id and attrs.get("modelSourceKind") == "kfp" and attrs.get("modelSourceId"):
                run_id = str(attrs["modelSourceId"])
            run_id = run_id or producers.get(attrs.get("uri", ""), "")
            items.append({"id": v.id, "name": v.name, "state": v.state, "author": v.attrs.get("author", ""),
                          "description": v.attrs.get("description", ""), "created_ms": v.created_ms,
                          "properties": props, "uri": attrs.get("uri", ""),
                          "format": attrs.get("modelFormatName", ""), "run_id": run_id,
                          "serving": serving.get(str(v.id), "")})
        live = [i for i in items if i["serving"]]
        metric_names = sorted({k for i in items for k, val in i["properties"].items()
                               if isinstance(val, int | float) and not isinstance(val, bool)})
        for i in items:  # the metric delta against what serves now
            base = live[0]["properties"] if live and live[0] is not i else {}
            i["delta"] = {k: i["properties"][k] - base[k] for k in metric_names
                          if isinstance(i["properties"].get(k), int | float) and isinstance(base.get(k), int | float)}
        chosen = next((i for i in items if str(i["id"]) == deploy), None)
        form = None
        if chosen is not None:
            fmt = chosen["format"] if chosen["format"] in FORMATS else "sklearn"
            form = {"version": chosen["name"], "version_id": chosen["id"], "name": dns_name(row.name or "model"),
                    "namespace": "default", "format": fmt, "min_replicas": 1, "max_replicas": 1}
        return {"model": {"id": row.id, "name": row.name, "state": row.state,
                          "description": row.attrs.get("description", ""), "owner": row.attrs.get("owner", ""),
                          "properties": plain(row.custom), "created_ms": row.created_ms},
                "versions": items, "metric_names": metric_names, "deploy_form": form, "formats": FORMATS,
                "serving_version": live[0]["name"] if live else "", "comparison": _compare(items, compare)}

    @router.post("/models/{model_id}/archive")
    @router.post("/models/{model_id}/restore")
    @router.post("/models/{model_id}/versions/{version_id}/archive")
    @router.post("/models/{model_id}/versions/{version_id}/restore")
    @pages.action
    async def archive(request: Request, model_id: str, version_id: str = "") -> Response:
        await csrf.checked_form(request)
        state = "ARCHIVED" if request.url.path.endswith("/archive") else "LIVE"

        def change(session: Any) -> None:
            model_row = store.get(session, "registered_model", model_id)
            target = store.get(session, "model_version", version_id) if version_id else model_row
            if version_id and target.scope != model_row.id:
                raise InvalidInput(f"Version {version_id} does not belong to model {model_id}.")
            store.update(session, target, {"state": state})
        registry().edit(change)
        return pages.redirect(f"/models/{model_id}")

    @router.post("/models/{model_id}/versions/{version_id}/deploy")
    @pages.action
    async def deploy(request: Request, model_id: str, version_id: str) -> Response:
        form = await csrf.checked_form(request)

        def names(conn: Any) -> tuple[str, str]:
            model_row = store.read(conn, "registered_model", model_id)
            version = store.read(conn, "model_version", version_id)
            return str(model_row.name), str(version.name)
        model_name, version_name = registry().read(names)
        namespace = str(form.get("namespace") or "default")
        body: dict[str, Any] = {"model": model_name, "version": version_name,
                                "name": str(form.get("name") or dns_name(model_name)),
                                "format": str(form.get("format") or "sklearn")}
        for field, key in (("min_replicas", "minReplicas"), ("max_replicas", "maxReplicas")):
            raw = str(form.get(field) or "").strip()
            if raw:
                if not raw.isdigit():
                    raise InvalidInput(f"{key} must be a whole number; got {raw!r}.")
                body[key] = int(raw)
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            raise InvalidInput(f"Namespace {namespace!r} is not a DNS label.")
        await call_api(platform, "POST", f"{SERVING_API}/namespaces/{namespace}/deployments", body)
        return pages.redirect(f"/deployments/{namespace}/{body['name']}")

    return router


def _model_row(session: Session, key: str) -> Resource:
    """A model by id, or by name (``/models/iris`` is the URL people type); an id wins a name made of digits."""
    if key.isdigit():
        return store.get(session, "registered_model", key)
    row = session.scalar(select(Resource).where(Resource.family == "registered_model", Resource.name == key))
    if row is None:
        raise NotFound(f"No model is named {key!r}. The registered models are listed at /models.")
    return row
