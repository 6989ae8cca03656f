"""The KFP v2beta1 REST API subset ``kfp.Client`` uses, mounted at ``/apis/v2beta1`` and
``/pipeline/apis/v2beta1`` (so ``kfp.Client(host="http://127.0.0.1:8080/pipeline")`` works).

Handlers are thin: they parse, call :class:`~kfbox.pipelines.service.PipelinesService`, and
shape rows with :mod:`kfbox.pipelines.views`. Every body and reply is declared in
:mod:`kfbox.pipelines.schemas` (so they are in /openapi.json); replies are written by a
:class:`~kfbox.pipelines.schemas.Reply`. Two kfbox additions live beside the KFP paths:
``GET /runs/{run_id}/tasks/{task}/logs`` and ``GET /artifacts/{artifact_id}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, File, Query, Response, UploadFile
from fastapi.responses import PlainTextResponse

from kfbox import __version__
from kfbox.errors import InvalidInput, Unsupported
from kfbox.pipelines import schemas as s
from kfbox.pipelines import spec as specs
from kfbox.pipelines import views
from kfbox.pipelines.body_route import JsonBodyRoute
from kfbox.pipelines.listing import Listing

if TYPE_CHECKING:
    from kfbox.pipelines.service import PipelinesService

MAX_LOG_BYTES = 1024 * 1024
HEALTHZ = s.Reply[s.V2beta1GetHealthzResponse](s.V2beta1GetHealthzResponse)
EXPERIMENT = s.Reply[s.V2beta1Experiment](s.V2beta1Experiment)
EXPERIMENTS = s.Reply[s.V2beta1ListExperimentsResponse](s.V2beta1ListExperimentsResponse)
PIPELINE = s.Reply[s.V2beta1Pipeline](s.V2beta1Pipeline)
VERSION = s.Reply[s.V2beta1PipelineVersion](s.V2beta1PipelineVersion)
PIPELINES = s.Reply[s.V2beta1ListPipelinesResponse](s.V2beta1ListPipelinesResponse)
VERSIONS = s.Reply[s.V2beta1ListPipelineVersionsResponse](s.V2beta1ListPipelineVersionsResponse)
RUN = s.Reply[s.V2beta1Run](s.V2beta1Run)
RUNS = s.Reply[s.V2beta1ListRunsResponse](s.V2beta1ListRunsResponse)
ARTIFACT = s.Reply[s.Artifact](s.Artifact)


def build_router(service: PipelinesService) -> APIRouter:
    router = APIRouter(tags=["pipelines"], route_class=JsonBodyRoute)
    catalog, runs = service.catalog, service.runs

    def listing(name: str, page_token: str | None, page_size: int | None, sort_by: str | None,
                filter: str | None) -> Listing:
        return Listing.parse(name, filter, sort_by, page_size, page_token)

    @router.get("/healthz", response_model=s.V2beta1GetHealthzResponse)
    def healthz() -> Response:
        return HEALTHZ({"commit_sha": "", "tag_name": __version__, "multi_user": False,
                        "pipeline_store": "database"})

    # experiments
    @router.post("/experiments", response_model=s.V2beta1Experiment)
    def create_experiment(body: s.ExperimentBody) -> Response:
        row = catalog.create_experiment(body.get("display_name"), body.get("description") or "",
                                        body.get("namespace") or "")
        return EXPERIMENT(views.experiment(row))

    @router.get("/experiments", response_model=s.V2beta1ListExperimentsResponse)
    def list_experiments(page_token: str | None = None, page_size: int | None = None, sort_by: str | None = None,
                         filter: str | None = None, namespace: str | None = None) -> Response:
        rows, token, total = catalog.list_experiments(listing("experiments", page_token, page_size, sort_by, filter))
        return EXPERIMENTS({"experiments": [views.experiment(r) for r in rows], "total_size": total,
                            "next_page_token": token})

    @router.get("/experiments/{experiment_id}", response_model=s.V2beta1Experiment)
    def get_experiment(experiment_id: str) -> Response:
        return EXPERIMENT(views.experiment(catalog.get_experiment(experiment_id)))

    @router.post("/experiments/{experiment_id}:archive", response_model=s.Empty)
    def archive_experiment(experiment_id: str) -> s.Empty:
        catalog.set_experiment_state(experiment_id, "ARCHIVED")
        return {}

    @router.post("/experiments/{experiment_id}:unarchive", response_model=s.Empty)
    def unarchive_experiment(experiment_id: str) -> s.Empty:
        catalog.set_experiment_state(experiment_id, "AVAILABLE")
        return {}

    @router.delete("/experiments/{experiment_id}", response_model=s.Empty)
    def delete_experiment(experiment_id: str) -> s.Empty:
        catalog.delete_experiment(experiment_id)
        return {}

    # pipelines and versions
    @router.post("/pipelines", response_model=s.V2beta1Pipeline)
    def create_pipeline(body: s.PipelineBody) -> Response:
        return PIPELINE(views.pipeline(catalog.create_pipeline(body.get("display_name") or body.get("name"),
                                                      body.get("description") or "", body.get("namespace") or "")))

    @router.post("/pipelines/create", response_model=s.V2beta1Pipeline)
    def create_pipeline_and_version(body: s.V2beta1CreatePipelineAndVersionRequest) -> Response:
        pipeline, version = body.get("pipeline") or {}, body.get("pipeline_version") or {}
        spec = _version_spec(version)
        row = catalog.create_pipeline(pipeline.get("display_name") or pipeline.get("name"),
                                      pipeline.get("description") or "", pipeline.get("namespace") or "",
                                      spec=spec, version_name=version.get("display_name") or version.get("name"))
        return PIPELINE(views.pipeline(row))

    @router.post("/pipelines/upload", response_model=s.V2beta1Pipeline)
    def upload_pipeline(uploadfile: UploadFile = File(...), name: str | None = None,
                        display_name: str | None = None, description: str | None = None,
                        namespace: str | None = None) -> Response:
        spec = specs.parse_package(uploadfile.file.read(), uploadfile.filename or "pipeline.yaml")
        title = display_name or name or specs.pipeline_name(spec)
        return PIPELINE(views.pipeline(catalog.create_pipeline(title, description or "", namespace or "", spec=spec)))

    @router.post("/pipelines/upload_version", response_model=s.V2beta1PipelineVersion)
    def upload_version(uploadfile: UploadFile = File(...), name: str | None = None,
                       display_name: str | None = None, pipelineid: str | None = None,
                       description: str | None = None) -> Response:
        if not pipelineid:
            raise InvalidInput("upload_version needs the query parameter pipelineid (the pipeline to add to).")
        spec = specs.parse_package(uploadfile.file.read(), uploadfile.filename or "pipeline.yaml")
        title = display_name or name or uploadfile.filename or specs.pipeline_name(spec)
        return VERSION(views.pipeline_version(catalog.create_version(pipelineid, title, spec, description or "")))

    @router.get("/pipelines", response_model=s.V2beta1ListPipelinesResponse)
    def list_pipelines(page_token: str | None = None, page_size: int | None = None, sort_by: str | None = None,
                       filter: str | None = None, namespace: str | None = None) -> Response:
        rows, token, total = catalog.list_pipelines(listing("pipelines", page_token, page_size, sort_by, filter))
        return PIPELINES({"pipelines": [views.pipeline(r) for r in rows], "total_size": total,
                          "next_page_token": token})

    @router.get("/pipelines/names/{name}", response_model=s.V2beta1Pipeline)
    def get_pipeline_by_name(name: str, namespace: str | None = None) -> Response:
        return PIPELINE(views.pipeline(catalog.pipeline_by_name(name, namespace or "")))

    @router.get("/pipelines/{pipeline_id}", response_model=s.V2beta1Pipeline)
    def get_pipeline(pipeline_id: str) -> Response:
        return PIPELINE(views.pipeline(catalog.get_pipeline(pipeline_id)))

    @router.delete("/pipelines/{pipeline_id}", response_model=s.Empty)
    def delete_pipeline(pipeline_id: str) -> s.Empty:
        catalog.delete_pipeline(pipeline_id)
        return {}

    @router.post("/pipelines/{pipeline_id}/versions", response_model=s.V2beta1PipelineVersion)
    def create_version(pipeline_id: str, body: s.PipelineVersionBody) -> Response:
        row = catalog.create_version(pipeline_id, body.get("display_name") or body.get("name"), _version_spec(body),
                                     body.get("description") or "")
        return VERSION(views.pipeline_version(row))

    @router.get("/pipelines/{pipeline_id}/versions", response_model=s.V2beta1ListPipelineVersionsResponse)
    def list_versions(pipeline_id: str, page_token: str | None = None, page_size: int | None = None,
                      sort_by: str | None = None, filter: str | None = None) -> Response:
        page = listing(f"pipelines/{pipeline_id}/versions", page_token, page_size, sort_by, filter)
        rows, token, total = catalog.list_versions(pipeline_id, page)
        return VERSIONS({"pipeline_versions": [views.pipeline_version(r) for r in rows], "total_size": total,
                         "next_page_token": token})

    @router.get("/pipelines/{pipeline_id}/versions/{version_id}", response_model=s.V2beta1PipelineVersion)
    def get_version(pipeline_id: str, version_id: str) -> Response:
        return VERSION(views.pipeline_version(catalog.get_version(pipeline_id, version_id)))

    @router.delete("/pipelines/{pipeline_id}/versions/{version_id}", response_model=s.Empty)
    def delete_version(pipeline_id: str, version_id: str) -> s.Empty:
        catalog.delete_version(pipeline_id, version_id)
        return {}

    # runs
    @router.post("/runs", response_model=s.V2beta1Run)
    def create_run(body: s.RunBody, experiment_id: str | None = None) -> Response:
        if experiment_id and not body.get("experiment_id"):
            body["experiment_id"] = experiment_id
        return RUN(views.run(service.create_run(dict(body))))

    @router.get("/runs", response_model=s.V2beta1ListRunsResponse)
    def list_runs(page_token: str | None = None, page_size: int | None = None, sort_by: str | None = None,
                  filter: str | None = None, experiment_id: str | None = None,
                  namespace: str | None = None) -> Response:
        page = listing(f"runs experiment_id={experiment_id or ''}", page_token, page_size, sort_by, filter)
        rows, token, total = runs.list_runs(page, experiment_id)
        return RUNS({"runs": [views.run(r) for r in rows], "total_size": total, "next_page_token": token})

    @router.get("/runs/{run_id}", response_model=s.V2beta1Run)
    def get_run(run_id: str) -> Response:
        run, tasks, artifacts = runs.details(run_id)
        return RUN(views.run(run, tasks, artifacts))

    @router.post("/runs/{run_id}:terminate", response_model=s.Empty)
    def terminate_run(run_id: str) -> s.Empty:
        runs.get(run_id)
        service.supervisor.cancel(run_id)
        return {}

    @router.post("/runs/{run_id}:archive", response_model=s.Empty)
    def archive_run(run_id: str) -> s.Empty:
        runs.set_storage(run_id, "ARCHIVED")
        return {}

    @router.post("/runs/{run_id}:unarchive", response_model=s.Empty)
    def unarchive_run(run_id: str) -> s.Empty:
        runs.set_storage(run_id, "AVAILABLE")
        return {}

    @router.post("/runs/{run_id}:retry", response_model=s.Empty)
    def retry_run(run_id: str) -> s.Empty:
        service.supervisor.retry(run_id)  # failed and skipped tasks run again; succeeded ones are reused
        return {}

    @router.delete("/runs/{run_id}", response_model=s.Empty)
    def delete_run(run_id: str) -> s.Empty:
        runs.get(run_id)
        service.supervisor.forget(run_id)
        runs.delete(run_id)
        return {}

    @router.get("/runs/{run_id}/tasks/{task:path}/logs", response_class=PlainTextResponse)
    def task_logs(run_id: str, task: str, tail: int = Query(0, ge=0)) -> str:
        row = runs.task(run_id, task)
        if not row.log_path:
            raise InvalidInput(f"Task {row.path!r} is a DAG; it has no log of its own. Ask for one of its tasks.")
        return _read_log(row.log_path, tail)

    @router.get("/artifacts/{artifact_id}", response_model=s.Artifact)
    def get_artifact(artifact_id: str) -> Response:
        if not (artifact_id.isascii() and artifact_id.isdigit()) or len(artifact_id) > 18:
            raise InvalidInput(f"Artifact id {artifact_id[:40]!r} is not valid; artifact ids are whole numbers "
                               "like '12', listed in a run's task_details[].outputs.")
        return ARTIFACT(views.artifact(runs.artifact(artifact_id)))

    # recurring runs: kfbox.pipelines.schedule_api
    return router


def _version_spec(version: s.PipelineVersionBody) -> dict[str, Any]:
    if version.get("pipeline_spec") is not None:
        return specs.normalise(version["pipeline_spec"])
    if version.get("package_url"):
        raise Unsupported("Pipeline versions from package_url are not supported by kfbox (it fetches nothing "
                          "from the network); upload the file: POST /apis/v2beta1/pipelines/upload_version.")
    raise InvalidInput("A pipeline version needs pipeline_spec (the compiled pipeline).")


def _read_log(path: str, tail: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - MAX_LOG_BYTES))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    if tail:
        text = "\n".join(text.splitlines()[-tail:]) + "\n"
    return text
