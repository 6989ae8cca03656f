"""The routes and replies of the ``recurringruns`` API (:mod:`kfbox.pipelines.schedule_api` mounts them):
built by the first request under their paths, so a server start imports neither this module nor FastAPI."""

from __future__ import annotations

from fastapi import APIRouter, Response

from kfbox.pipelines import schemas as s
from kfbox.pipelines.body_route import JsonBodyRoute
from kfbox.pipelines.listing import Listing
from kfbox.pipelines.schedules import RecurringRun, Scheduler, ScheduleStore
from kfbox.pipelines.views import status, timestamp

RECURRING_RUN = s.Reply[s.V2beta1RecurringRun](s.V2beta1RecurringRun)
RECURRING_RUNS = s.Reply[s.V2beta1ListRecurringRunsResponse](s.V2beta1ListRecurringRunsResponse)


def recurring_run(row: RecurringRun, now: int, run_ids: list[str] | None = None) -> s.V2beta1RecurringRun:
    start, end = timestamp(row.start_ms), timestamp(row.end_ms)
    trigger: s.V2beta1Trigger = (
        {"cron_schedule": {"start_time": start, "end_time": end, "cron": row.cron}} if row.cron is not None
        else {"periodic_schedule": {"start_time": start, "end_time": end,
                                    "interval_second": str(row.interval_seconds)}})
    body: s.V2beta1RecurringRun = {
        "recurring_run_id": row.id, "display_name": row.display_name, "description": row.description,
        "namespace": row.namespace, "experiment_id": row.experiment_id, "service_account": row.service_account,
        "runtime_config": {"parameters": row.parameters, "pipeline_root": row.pipeline_root},
        "max_concurrency": str(row.max_concurrency), "trigger": trigger, "no_catchup": row.no_catchup,
        "mode": "ENABLE" if row.enabled else "DISABLE", "status": "ENABLED" if row.enabled else "DISABLED",
        "created_at": timestamp(row.created_ms), "updated_at": timestamp(row.updated_ms),
        "error": status(row.error),
        # kfbox additions
        "last_run_at": timestamp(row.last_tick_ms),
        "next_run_at": timestamp(row.next_tick(now)) if row.enabled else None,
    }
    if row.pipeline_spec is not None:
        body["pipeline_spec"] = row.pipeline_spec
    else:
        body["pipeline_version_reference"] = {"pipeline_id": row.pipeline_id,
                                              "pipeline_version_id": row.pipeline_version_id}
        if row.pipeline_version_id:
            body["pipeline_version_id"] = row.pipeline_version_id
    if run_ids is not None:
        body["run_ids"] = run_ids
    return body


def build_router(store: ScheduleStore, scheduler: Scheduler) -> APIRouter:
    router = APIRouter(tags=["pipelines"], route_class=JsonBodyRoute)

    def now() -> int:
        return scheduler.clock()

    @router.post("/recurringruns", response_model=s.V2beta1RecurringRun)
    def create(body: s.RecurringRunBody) -> Response:
        row = store.create(dict(body))
        scheduler.wake()
        return RECURRING_RUN(recurring_run(row, now(), []))

    @router.get("/recurringruns", response_model=s.V2beta1ListRecurringRunsResponse)
    def list_recurring_runs(page_token: str | None = None, page_size: int | None = None,
                            sort_by: str | None = None, filter: str | None = None, experiment_id: str | None = None,
                            namespace: str | None = None) -> Response:
        page = Listing.parse(f"recurringruns experiment_id={experiment_id or ''}", filter, sort_by, page_size,
                             page_token)
        rows, token, total = store.list_schedules(page, experiment_id)
        return RECURRING_RUNS({"recurringRuns": [recurring_run(r, now()) for r in rows], "total_size": total,
                               "next_page_token": token})

    @router.get("/recurringruns/{recurring_run_id}", response_model=s.V2beta1RecurringRun)
    def get(recurring_run_id: str) -> Response:
        return RECURRING_RUN(recurring_run(store.get(recurring_run_id), now(), store.run_ids(recurring_run_id)))

    @router.post("/recurringruns/{recurring_run_id}:enable", response_model=s.Empty)
    def enable(recurring_run_id: str) -> s.Empty:
        store.set_enabled(recurring_run_id, True)
        scheduler.wake()
        return {}

    @router.post("/recurringruns/{recurring_run_id}:disable", response_model=s.Empty)
    def disable(recurring_run_id: str) -> s.Empty:
        store.set_enabled(recurring_run_id, False)
        return {}

    @router.delete("/recurringruns/{recurring_run_id}", response_model=s.Empty)
    def delete(recurring_run_id: str) -> s.Empty:
        store.delete(recurring_run_id)
        return {}

    return router
