"""Create a run: a form generated from the pipeline's parameters (types, defaults, required), for a
pipeline version or as a clone of an earlier run; the browser validates before submit, the server
validates again with the API's own parameter checks.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from kfbox.errors import InvalidInput, KfboxError
from kfbox.pipelines import spec as specs
from kfbox.pipelines.tables import Experiment
from kfbox.server.platform import Platform, required
from kfbox.ui import csrf
from kfbox.ui.render import Pages

INPUT_TYPES = {"NUMBER_INTEGER": ("number", "1"), "NUMBER_DOUBLE": ("number", "any")}


def form_fields(spec: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """One form field per pipeline parameter, prefilled with ``values`` or the default."""
    fields = []
    for name, d in specs.input_definitions(spec).items():
        kind = d.get("parameterType", "STRING")
        value = values.get(name, d.get("defaultValue"))
        if kind in ("LIST", "STRUCT") and value is not None:
            shown = json.dumps(value)
        elif kind == "BOOLEAN" and value is not None:
            shown = "true" if value else "false"
        else:
            shown = "" if value is None else str(value)
        widget, step = INPUT_TYPES.get(kind, ("text", ""))
        if kind == "BOOLEAN":
            widget = "boolean"
        elif kind in ("LIST", "STRUCT"):
            widget = "json"
        fields.append({"name": name, "type": kind, "widget": widget, "step": step, "value": shown,
                       "required": "defaultValue" not in d and not d.get("isOptional"),
                       "description": d.get("description", "")})
    return fields


def parse_values(spec: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
    """Form strings -> typed arguments; empty optional fields are left to their defaults."""
    values: dict[str, Any] = {}
    for name in specs.input_definitions(spec):
        raw = str(form.get(f"param.{name}", "")).strip()
        if raw == "":
            continue
        values[name] = specs.coerce_parameter(spec, name, raw)
    return specs.check_parameters(spec, values)


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def svc() -> Any:
        return required(platform.services.pipelines, "pipelines")

    def context(pipeline: str, version: str, source: str, form: dict[str, Any] | None = None,
                error: str = "") -> dict[str, Any]:
        cat = svc().catalog
        values: dict[str, Any] = {}
        name, experiment_id = "", ""
        if source:
            run = svc().runs.get(source)
            spec, values, experiment_id = run.pipeline_spec, dict(run.parameters), run.experiment_id
            name = f"Clone of {run.display_name}"[:255]
            pipeline, version = run.pipeline_id or "", run.pipeline_version_id or ""
            title = run.display_name
        elif pipeline:
            with platform.db.read() as s:
                row = (cat.get_version(pipeline, version, s) if version else cat.latest_version(pipeline, s))
            spec, version = row.pipeline_spec, row.id
            title = cat.get_pipeline(pipeline).display_name
            name = f"{title} run"
        else:
            raise InvalidInput("Pick the pipeline to run from the Pipelines page, or clone a run from its page.")
        fields = form_fields(spec, values)
        if form:
            for f in fields:
                f["value"] = str(form.get(f"param.{f['name']}", f["value"]))
            name = str(form.get("display_name", name))
            experiment_id = str(form.get("experiment_id", experiment_id))
        with platform.db.read() as s:
            experiments = [{"id": i, "name": n} for i, n in s.execute(
                select(Experiment.id, Experiment.display_name).where(Experiment.storage_state == "AVAILABLE")
                .order_by(Experiment.display_name).limit(500))]
        return {"fields": fields, "display_name": name, "experiment_id": experiment_id, "experiments": experiments,
                "pipeline": pipeline, "version": version, "source": source, "what": title, "error": error,
                "pipeline_name": specs.pipeline_name(spec)}

    @router.get("/runs/new")
    @router.get("/runs/new.json")
    @pages.page("run_new.html", "New run")
    def new_run(request: Request, pipeline: str = "", version: str = "", source: str = "") -> dict[str, Any]:
        return context(pipeline, version, request.query_params.get("from", source))

    @router.post("/runs/new")
    @pages.action
    async def create(request: Request) -> Response:
        form = await csrf.checked_form(request)
        pipeline, version, source = (str(form.get(k, "")) for k in ("pipeline", "version", "source"))
        try:
            if source:
                run = svc().runs.get(source)
                spec = run.pipeline_spec
                reference = ({"pipeline_id": run.pipeline_id, "pipeline_version_id": run.pipeline_version_id}
                             if run.pipeline_version_id else None)
            else:
                with platform.db.read() as s:
                    spec = svc().catalog.get_version(pipeline or None, version, s).pipeline_spec
                reference = {"pipeline_id": pipeline, "pipeline_version_id": version}
            body: dict[str, Any] = {"display_name": str(form.get("display_name", "")).strip(),
                                    "runtime_config": {"parameters": parse_values(spec, form)}}
            if form.get("experiment_id"):
                body["experiment_id"] = str(form["experiment_id"])
            if reference:
                body["pipeline_version_reference"] = reference
            else:
                body["pipeline_spec"] = spec
            created = svc().create_run(body)
        except KfboxError as exc:
            data = context(pipeline, version, source, form, exc.message)
            return pages.render(request, "run_new.html", data, "New run", status=exc.status_code)
        return pages.redirect(f"/runs/{created.id}")

    return router
