"""The KFP v2beta1 wire shapes, declared: request bodies and replies of :mod:`kfbox.pipelines.api` and
:mod:`kfbox.pipelines.schedule_api`, with the field names, types and enums of upstream's
``backend/api/v2beta1/swagger/*.swagger.json`` (the ``V2beta1*`` models ``kfp_server_api`` parses).

They are TypedDicts rather than pydantic models: a view builds a plain dict (no model object per row)
and mypy checks its shape. Routes declare them as ``response_model`` (so they are in /openapi.json) and
answer with :class:`Reply`, which writes the dict with the schema's pydantic-core serializer without
validating it again: FastAPI's own check of a 600-task run cost 13.6 ms of CPU against 2.3 ms for the
write alone (the tests validate every reply against its schema instead).

kfbox adds a few read-only fields clients ignore; each is marked "kfbox addition". Times are RFC 3339
strings, int64s are decimal strings (protobuf JSON), unset times are ``null``.

Request bodies are ``total=False`` with nullable fields: a client sends what it sets, and fields this
server does not know are ignored (newer SDKs add some); the stores check the meaning (names, specs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Literal, NotRequired, TypeVar

from starlette.responses import Response
from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only on Python >= 3.12

if TYPE_CHECKING:  # imported by the first reply: a server start imports this module, not pydantic
    from pydantic import TypeAdapter

T = TypeVar("T")

RuntimeState = Literal["RUNTIME_STATE_UNSPECIFIED", "PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED",
                       "CANCELING", "CANCELED", "PAUSED"]
StorageState = Literal["STORAGE_STATE_UNSPECIFIED", "AVAILABLE", "ARCHIVED"]
RecurringRunMode = Literal["MODE_UNSPECIFIED", "ENABLE", "DISABLE"]
RecurringRunStatus = Literal["STATUS_UNSPECIFIED", "ENABLED", "DISABLED"]
TaskKind = Literal["container", "importer", "dag"]


class Reply(Generic[T]):
    """Writes replies of one declared schema: ``RUN = Reply[V2beta1Run](V2beta1Run)``, then ``return RUN(body)``.

    Keys the schema does not declare are left out, as FastAPI's check would; the serializer is built on
    first use, so importing the API costs nothing at server start.
    """

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.adapter: TypeAdapter[T] | None = None

    def __call__(self, body: T) -> Response:
        if self.adapter is None:
            from pydantic import TypeAdapter

            self.adapter = TypeAdapter(self.schema)
        return Response(self.adapter.dump_json(body), media_type="application/json")


class Empty(TypedDict):
    """The reply of a call that returns nothing (``{}``)."""


class GooglerpcStatus(TypedDict):
    code: int
    message: str
    details: list[dict[str, Any]]


class V2beta1GetHealthzResponse(TypedDict):
    multi_user: bool
    pipeline_store: str
    commit_sha: str
    """kfbox addition (the v1 healthz field)."""
    tag_name: str
    """kfbox addition (the v1 healthz field): kfbox's version."""


# experiments
class V2beta1Experiment(TypedDict):
    experiment_id: str
    display_name: str
    description: str
    created_at: str | None
    namespace: str
    storage_state: StorageState
    last_run_created_at: str | None


class V2beta1ListExperimentsResponse(TypedDict):
    experiments: list[V2beta1Experiment]
    total_size: int
    next_page_token: str


class ExperimentBody(TypedDict, total=False):
    """A V2beta1Experiment as a create request sends it."""

    display_name: str | None
    description: str | None
    namespace: str | None


# pipelines and versions
class V2beta1Pipeline(TypedDict):
    pipeline_id: str
    display_name: str
    name: str
    description: str
    created_at: str | None
    namespace: str


class V2beta1PipelineVersion(TypedDict):
    pipeline_id: str
    pipeline_version_id: str
    display_name: str
    name: str
    description: str
    created_at: str | None
    pipeline_spec: NotRequired[dict[str, Any]]


class V2beta1ListPipelinesResponse(TypedDict):
    pipelines: list[V2beta1Pipeline]
    total_size: int
    next_page_token: str


class V2beta1ListPipelineVersionsResponse(TypedDict):
    pipeline_versions: list[V2beta1PipelineVersion]
    total_size: int
    next_page_token: str


class PipelineBody(TypedDict, total=False):
    """A V2beta1Pipeline as a create request sends it."""

    display_name: str | None
    name: str | None
    description: str | None
    namespace: str | None


class V2beta1Url(TypedDict, total=False):
    pipeline_url: str | None


class PipelineVersionBody(TypedDict, total=False):
    """A V2beta1PipelineVersion as a create request sends it (``package_url`` is refused: kfbox fetches
    nothing from the network)."""

    display_name: str | None
    name: str | None
    description: str | None
    pipeline_id: str | None
    pipeline_spec: dict[str, Any] | None
    package_url: V2beta1Url | None
    code_source_url: str | None


class V2beta1CreatePipelineAndVersionRequest(TypedDict, total=False):
    pipeline: PipelineBody | None
    pipeline_version: PipelineVersionBody | None


# runs
class V2beta1RuntimeConfig(TypedDict):
    parameters: dict[str, Any]
    pipeline_root: str


class V2beta1PipelineVersionReference(TypedDict):
    pipeline_id: str | None
    pipeline_version_id: str | None


class V2beta1RuntimeStatus(TypedDict):
    update_time: str | None
    state: RuntimeState
    error: NotRequired[GooglerpcStatus | None]


class V2beta1ArtifactList(TypedDict):
    artifact_ids: list[str]


class PipelineTaskDetailChildTask(TypedDict):
    task_id: str
    pod_name: str


class V2beta1PipelineTaskExecutorDetail(TypedDict, total=False):
    main_job: str
    failed_main_jobs: list[str]


class V2beta1PipelineTaskDetail(TypedDict):
    run_id: str
    task_id: str
    display_name: str
    create_time: str | None
    start_time: str | None
    end_time: str | None
    executor_detail: V2beta1PipelineTaskExecutorDetail
    state: RuntimeState
    execution_id: str
    error: GooglerpcStatus | None
    inputs: dict[str, V2beta1ArtifactList]
    outputs: dict[str, V2beta1ArtifactList]
    parent_task_id: str | None
    state_history: list[V2beta1RuntimeStatus]
    pod_name: str
    """The task's path, unique within the run."""
    child_tasks: list[PipelineTaskDetailChildTask]
    parameters: dict[str, Any]
    """kfbox addition: the task's output parameters."""
    input_parameters: dict[str, Any]
    """kfbox addition: the parameters the task was given."""
    cache_hit: bool
    """kfbox addition: whether the cache answered instead of running the task."""
    kind: TaskKind
    """kfbox addition."""
    path: str
    """kfbox addition: the task's path in the DAG (as ``pod_name``)."""
    warnings: list[str]
    """kfbox addition: task settings that have no meaning on one machine."""
    skip_reason: str | None
    """kfbox addition: why a task was skipped."""


class V2beta1RunDetails(TypedDict):
    task_details: list[V2beta1PipelineTaskDetail]


class V2beta1Run(TypedDict):
    experiment_id: str
    run_id: str
    display_name: str
    storage_state: StorageState
    description: str
    pipeline_version_id: NotRequired[str]
    pipeline_spec: NotRequired[dict[str, Any]]
    pipeline_version_reference: NotRequired[V2beta1PipelineVersionReference]
    runtime_config: V2beta1RuntimeConfig
    service_account: str
    created_at: str | None
    scheduled_at: str | None
    finished_at: str | None
    state: RuntimeState
    error: GooglerpcStatus | None
    run_details: NotRequired[V2beta1RunDetails]
    """Only in the reply for one run."""
    state_history: list[V2beta1RuntimeStatus]


class V2beta1ListRunsResponse(TypedDict):
    runs: list[V2beta1Run]
    total_size: int
    next_page_token: str


class RuntimeConfigBody(TypedDict, total=False):
    parameters: dict[str, Any] | None
    pipeline_root: str | None


class PipelineVersionReferenceBody(TypedDict, total=False):
    pipeline_id: str | None
    pipeline_version_id: str | None


class RunBody(TypedDict, total=False):
    """A V2beta1Run as a create request sends it: a ``pipeline_spec`` or a ``pipeline_version_reference``."""

    experiment_id: str | None
    display_name: str | None
    description: str | None
    pipeline_version_id: str | None
    pipeline_spec: dict[str, Any] | None
    pipeline_version_reference: PipelineVersionReferenceBody | None
    runtime_config: RuntimeConfigBody | None
    service_account: str | None
    recurring_run_id: str | None


class Artifact(TypedDict):
    """kfbox addition (``GET /artifacts/{artifact_id}``): one output artifact of a task."""

    artifact_id: str
    run_id: str
    task_id: str
    name: str
    key: str
    uri: str
    type: str
    metadata: dict[str, Any]
    created_at: str | None


# recurring runs
class V2beta1CronSchedule(TypedDict):
    start_time: str | None
    end_time: str | None
    cron: str


class V2beta1PeriodicSchedule(TypedDict):
    start_time: str | None
    end_time: str | None
    interval_second: str


class V2beta1Trigger(TypedDict, total=False):
    cron_schedule: V2beta1CronSchedule
    periodic_schedule: V2beta1PeriodicSchedule


class V2beta1RecurringRun(TypedDict):
    recurring_run_id: str
    display_name: str
    description: str
    pipeline_version_id: NotRequired[str]
    pipeline_spec: NotRequired[dict[str, Any]]
    pipeline_version_reference: NotRequired[V2beta1PipelineVersionReference]
    runtime_config: V2beta1RuntimeConfig
    service_account: str
    max_concurrency: str
    trigger: V2beta1Trigger
    mode: RecurringRunMode
    created_at: str | None
    updated_at: str | None
    status: RecurringRunStatus
    error: GooglerpcStatus | None
    no_catchup: bool
    namespace: str
    experiment_id: str
    last_run_at: str | None
    """kfbox addition: when the schedule last started a run."""
    next_run_at: str | None
    """kfbox addition: when it starts the next one (``null`` while disabled)."""
    run_ids: NotRequired[list[str]]
    """kfbox addition (reply for one recurring run): the newest runs it started."""


class V2beta1ListRecurringRunsResponse(TypedDict):
    recurringRuns: list[V2beta1RecurringRun]  # upstream's name
    total_size: int
    next_page_token: str


class TriggerBody(TypedDict, total=False):
    cron_schedule: dict[str, Any] | None
    periodic_schedule: dict[str, Any] | None


class RecurringRunBody(TypedDict, total=False):
    """A V2beta1RecurringRun as a create request sends it (the store checks the trigger's fields)."""

    display_name: str | None
    description: str | None
    pipeline_version_id: str | None
    pipeline_spec: dict[str, Any] | None
    pipeline_version_reference: PipelineVersionReferenceBody | None
    runtime_config: RuntimeConfigBody | None
    service_account: str | None
    max_concurrency: str | int | None
    trigger: TriggerBody | None
    mode: RecurringRunMode | None
    no_catchup: bool | None
    namespace: str | None
    experiment_id: str | None
