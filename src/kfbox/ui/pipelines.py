"""Pipelines: the list, a pipeline's versions and graph (from the IR), and uploading a compiled file.

Reads through the KFP API's catalogue (:class:`~kfbox.pipelines.catalog.Catalog`) with its
listing code, so the page and ``GET /apis/v2beta1/pipelines`` agree.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from starlette.datastructures import UploadFile

from kfbox.errors import InvalidInput, KfboxError
from kfbox.pipelines import spec as specs
from kfbox.pipelines.catalog import PIPELINE_FIELDS
from kfbox.pipelines.listing import Listing
from kfbox.pipelines.tables import Pipeline, PipelineVersion
from kfbox.server.platform import Platform, required
from kfbox.ui import csrf, dag
from kfbox.ui.render import Pages


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def catalog() -> Any:
        return required(platform.services.pipelines, "pipelines").catalog

    @router.get("/pipelines")
    @router.get("/pipelines.json")
    @pages.page("pipelines.html", "Pipelines")
    def pipelines(request: Request, q: str = "", page_token: str = "",
                  page_size: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
        listing = Listing.parse("dashboard pipelines", None, "created_at desc", page_size, page_token)
        if q:
            listing = listing.narrowed([{"key": "display_name", "operation": "IS_SUBSTRING", "string_value": q}])
        with platform.db.read() as s:
            rows, token, total = listing.apply(s, select(Pipeline), PIPELINE_FIELDS)
            counts = dict(s.execute(select(PipelineVersion.pipeline_id, func.count())
                                    .where(PipelineVersion.pipeline_id.in_([p.id for p in rows]))
                                    .group_by(PipelineVersion.pipeline_id)).all())
        items = [{"pipeline_id": p.id, "display_name": p.display_name, "description": p.description,
                  "created_ms": p.created_ms, "versions": counts.get(p.id, 0)} for p in rows]
        return {"pipelines": items, "total": total, "q": q,
                "next_url": f"/pipelines?page_token={token}&q={q}" if token else ""}

    @router.get("/pipelines/upload")
    @router.get("/pipelines/upload.json")
    @pages.page("pipeline_upload.html", "Upload a pipeline")
    def upload_form(request: Request, pipeline: str = "") -> dict[str, Any]:
        return {"pipeline": catalog().get_pipeline(pipeline).display_name if pipeline else "",
                "pipeline_id": pipeline, "error": ""}

    @router.post("/pipelines/upload")
    @pages.action
    async def upload(request: Request) -> Response:
        csrf.check_origin(request)
        form = await request.form(max_part_size=platform.settings.max_body_bytes)
        cookie = request.cookies.get(csrf.COOKIE, "")
        if not cookie or str(form.get(csrf.FIELD) or "") != cookie:
            raise csrf.Forbidden("The form's CSRF token is missing or stale. Reload the page and submit it again.")
        file = form.get("file")
        name = str(form.get("name") or "").strip()
        pipeline_id = str(form.get("pipeline_id") or "")
        try:
            if not isinstance(file, UploadFile) or not file.filename:
                raise InvalidInput("Choose a compiled pipeline file (YAML from kfbox compile or kfp's compiler).")
            spec = specs.parse_package(await file.read(), file.filename)
            if pipeline_id:
                version = catalog().create_version(pipeline_id, name or file.filename, spec)
                return pages.redirect(f"/pipelines/{pipeline_id}?version={version.id}")
            created = catalog().create_pipeline(name or specs.pipeline_name(spec), "", "", spec=spec)
            return pages.redirect(f"/pipelines/{created.id}")
        except KfboxError as exc:
            data = {"pipeline": "", "pipeline_id": pipeline_id, "error": exc.message}
            return pages.render(request, "pipeline_upload.html", data, "Upload a pipeline", status=exc.status_code)

    @router.get("/pipelines/{pipeline_id}")
    @router.get("/pipelines/{pipeline_id}.json")
    @pages.page("pipeline.html", lambda d: d["pipeline"]["display_name"])
    def pipeline(request: Request, pipeline_id: str, version: str = "", open: str = "") -> dict[str, Any]:
        cat = catalog()
        row = cat.get_pipeline(pipeline_id)
        versions, _, total = cat.list_versions(pipeline_id, Listing.parse("dashboard versions", None, "created_at desc", 100, None))
        chosen = next((v for v in versions if v.id == version), None) if version else (versions[0] if versions
                                                                                       else None)
        if version and chosen is None:
            chosen = cat.get_version(pipeline_id, version)
        expanded = {g for g in open.split(",") if g}
        graph = None
        parameters: list[dict[str, Any]] = []
        if chosen is not None:
            if "*" in expanded:
                expanded = set(dag.build_graph(chosen.pipeline_spec).groups)
            graph = dag.build_graph(chosen.pipeline_spec, expanded).as_json()
            parameters = [{"name": k, "type": d.get("parameterType", "STRING"), "default": d.get("defaultValue"),
                           "optional": bool(d.get("isOptional"))}
                          for k, d in specs.input_definitions(chosen.pipeline_spec).items()]
        return {"pipeline": {"pipeline_id": row.id, "display_name": row.display_name,
                             "description": row.description, "created_ms": row.created_ms},
                "versions": [{"version_id": v.id, "display_name": v.display_name, "created_ms": v.created_ms,
                              "description": v.description} for v in versions],
                "version_count": total, "version": chosen.id if chosen else "", "graph": graph,
                "expanded": sorted(expanded), "open_param": ",".join(sorted(expanded)), "parameters": parameters}

    return router
