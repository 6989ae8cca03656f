"""The scheduler with an injected clock over a real database and the real run store.

No run executes here (there is no supervisor), so runs stay PENDING: exactly what
``max_concurrency`` counts. Finishing one with ``RunStore.finish`` frees a slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kfp import compiler

from kfbox.db import Database
from kfbox.errors import InvalidInput
from kfbox.pipelines.catalog import Catalog
from kfbox.pipelines.listing import Listing
from kfbox.pipelines.runs import RunStore
from kfbox.pipelines.schedules import Scheduler, ScheduleStore
from kfbox.pipelines.tables import Run
from tests.pipelines import ticker_pipeline
from tests.pipelines.ticker_pipeline import ticker

S = 1000
T0 = 1_767_600_000_000  # 2026-01-05T08:00:00Z


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import yaml

    path = tmp_path_factory.mktemp("spec") / "ticker.yaml"
    compiler.Compiler().compile(ticker, str(path))
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[ScheduleStore, RunStore]]:
    db = Database(f"sqlite:///{tmp_path / 'kfbox.db'}")
    db.upgrade()
    catalog = Catalog(db)
    yield ScheduleStore(db, catalog), RunStore(db, catalog)
    db.dispose()


def schedule(store: ScheduleStore, spec: dict[str, Any], **overrides: Any) -> str:
    body: dict[str, Any] = {"display_name": "nightly", "pipeline_spec": spec, "mode": "ENABLE",
                            "trigger": {"periodic_schedule": {"interval_second": "60"}},
                            "runtime_config": {"parameters": {"text": "hello"}}}
    body.update(overrides)
    return store.create(body, now=T0).id


def scheduler(stores: tuple[ScheduleStore, RunStore]) -> Scheduler:
    store, runs = stores
    return Scheduler(store, submit=lambda body: runs.create(body).id, clock=lambda: T0)


def test_interval_fires_on_time_and_runs_carry_the_schedule(stores: tuple[ScheduleStore, RunStore],
                                                           spec: dict[str, Any]) -> None:
    store, runs = stores
    sid = schedule(store, spec)
    sched = scheduler(stores)
    assert sched.tick(T0 + 59 * S) == []
    assert sched.next_due_ms == T0 + 60 * S  # the thread sleeps until then, not a whole poll
    [run_id] = sched.tick(T0 + 60 * S)
    run = runs.get(run_id)
    assert run.display_name == "nightly 2026-01-05T08:01:00Z" and run.parameters == {"text": "hello"}
    assert run.state == "PENDING"
    row = store.get(sid)
    assert row.last_tick_ms == T0 + 60 * S and row.run_count == 1 and store.run_ids(sid) == [run_id]


def test_max_concurrency_holds_the_tick_until_a_run_ends(stores: tuple[ScheduleStore, RunStore],
                                                        spec: dict[str, Any]) -> None:
    store, runs = stores
    schedule(store, spec, max_concurrency="1")
    sched = scheduler(stores)
    [first] = sched.tick(T0 + 60 * S)
    assert sched.tick(T0 + 120 * S) == []  # the first run is still PENDING
    assert runs.finish(first, "SUCCEEDED")
    [second] = sched.tick(T0 + 125 * S)
    assert runs.get(second).display_name.endswith("08:02:00Z")  # the held tick, not a new one


def test_no_catchup_after_downtime_is_one_run(stores: tuple[ScheduleStore, RunStore], spec: dict[str, Any]) -> None:
    store, _ = stores
    sid = schedule(store, spec, max_concurrency=10)
    sched = scheduler(stores)
    sched.tick(T0 + 60 * S)
    assert len(sched.tick(T0 + 3600 * S)) == 1  # an hour "down": 59 ticks missed, one run
    assert store.get(sid).last_tick_ms == T0 + 3600 * S


def test_explicit_catchup_backfills_up_to_max_concurrency(stores: tuple[ScheduleStore, RunStore],
                                                          spec: dict[str, Any]) -> None:
    store, runs = stores
    schedule(store, spec, max_concurrency=3, no_catchup=False)
    created = scheduler(stores).tick(T0 + 600 * S)
    names = [runs.get(r).display_name for r in created]
    assert names == ["nightly 2026-01-05T08:01:00Z", "nightly 2026-01-05T08:02:00Z", "nightly 2026-01-05T08:03:00Z"]


def test_disabled_schedules_do_not_fire_and_enabling_skips_missed_ticks(
        stores: tuple[ScheduleStore, RunStore], spec: dict[str, Any]) -> None:
    store, _ = stores
    sid = schedule(store, spec, mode="DISABLE", max_concurrency=5)
    sched = scheduler(stores)
    assert sched.tick(T0 + 600 * S) == []
    store.set_enabled(sid, True)
    assert len(sched.tick(T0 + 600 * S)) == 1
    store.set_enabled(sid, False)
    assert sched.tick(T0 + 6000 * S) == []


def test_end_time_stops_the_schedule(stores: tuple[ScheduleStore, RunStore], spec: dict[str, Any]) -> None:
    store, _ = stores
    schedule(store, spec, max_concurrency=5, trigger={"cron_schedule": {
        "cron": "0 * * * * *", "end_time": "2026-01-05T08:02:30Z"}})
    sched = scheduler(stores)
    assert len(sched.tick(T0 + 60 * S)) == 1
    assert len(sched.tick(T0 + 120 * S)) == 1
    assert sched.tick(T0 + 3600 * S) == []


def test_a_run_that_cannot_be_created_shows_on_the_schedule(stores: tuple[ScheduleStore, RunStore],
                                                            spec: dict[str, Any]) -> None:
    store, runs = stores
    catalog = runs.catalog
    pipeline = catalog.create_pipeline("ticker", spec=spec)
    sid = schedule(store, spec, pipeline_spec=None, pipeline_version_reference={"pipeline_id": pipeline.id})
    with runs.db.write() as s:  # the pipeline disappears after the schedule was made
        s.delete(catalog.get_pipeline(pipeline.id, s))
    sched = scheduler(stores)
    assert sched.tick(T0 + 60 * S) == []
    row = store.get(sid)
    assert row.last_tick_ms == T0 + 60 * S and row.run_count == 0
    assert row.error is not None and "was not created" in row.error and pipeline.id in row.error
    with runs.db.read() as s:
        assert s.query(Run).count() == 0


@pytest.mark.parametrize(("overrides", "message"), [
    ({"max_concurrency": 11}, "at least 1 and at most 10. Received 11"),
    ({"max_concurrency": "two"}, "max_concurrency must be a whole number"),
    ({"trigger": {}}, "needs trigger.cron_schedule"),
    ({"trigger": {"cron_schedule": {"cron": "*/5 * * * *"}}}, "seconds first"),
    ({"trigger": {"periodic_schedule": {"interval_second": 60, "start_time": "tomorrow"}}}, "not an RFC 3339"),
    ({"runtime_config": {"parameters": {"colour": "red"}}}, "has no parameter 'colour'"),
    ({"mode": "SOMETIMES"}, "use ENABLE or DISABLE"),
    ({"display_name": ""}, "display_name is required"),
    ({"description": 5}, "description must be a string"),
    ({"description": "a\x00b"}, "description contains a NUL character"),
    ({"display_name": "a\x00b"}, "must not contain control characters (found U+0000)"),
    ({"display_name": "a\tb"}, "must not contain control characters (found U+0009)"),
    ({"no_catchup": "yes"}, "no_catchup must be true or false"),
    ({"pipeline_spec": None, "pipeline_version_reference": "v1"}, "must be an object"),
])
def test_bad_schedules_are_refused(stores: tuple[ScheduleStore, RunStore], spec: dict[str, Any],
                                   overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        schedule(stores[0], spec, **overrides)
    assert message in exc.value.message


def test_container_components_are_scheduled_only_where_a_runtime_runs_them(
        stores: tuple[ScheduleStore, RunStore], tmp_path: Path) -> None:
    import yaml

    package = tmp_path / "shell.yaml"
    compiler.Compiler().compile(ticker_pipeline.shell_greeting, str(package))
    spec = yaml.safe_load(package.read_text())
    store, _ = stores
    with pytest.raises(InvalidInput, match="needs a container runtime"):
        schedule(store, spec, runtime_config={})
    on_host = ScheduleStore(store.db, store.catalog, container_runtime="host")
    assert on_host.get(schedule(on_host, spec, runtime_config={})).cron is None


def test_schedules_on_every_database(database_url: str, spec: dict[str, Any]) -> None:
    db = Database(database_url)
    db.upgrade()
    catalog = Catalog(db)
    store, runs = ScheduleStore(db, catalog), RunStore(db, catalog)
    try:
        sid = schedule(store, spec, description="nächtlich ✓", max_concurrency=2,
                       trigger={"cron_schedule": {"cron": "0 */5 * * * *", "start_time": "2026-01-05T08:00:00Z",
                                                  "end_time": "2026-01-05T09:00:00Z"}})
        sched = Scheduler(store, submit=lambda body: runs.create(body).id)
        [run_id] = sched.tick(T0 + 301 * S)
        assert runs.get(run_id).display_name == "nightly 2026-01-05T08:05:00Z"
        rows, _, total = store.list_schedules(Listing.parse("recurringruns", None, "display_name", 10, None))
        assert total == 1 and rows[0].description == "nächtlich ✓" and store.run_ids(sid) == [run_id]
        assert store.active_runs(sid) == 1
        store.delete(sid)
        assert runs.get(run_id).id == run_id
    finally:
        db.dispose()


def test_the_thread_sleeps_until_the_next_tick_and_polls_only_for_a_free_slot(
        stores: tuple[ScheduleStore, RunStore], spec: dict[str, Any]) -> None:
    store, runs = stores
    now = [T0]
    sched = Scheduler(store, submit=lambda body: runs.create(body).id, clock=lambda: now[0])
    sched.tick()
    assert sched.wait_seconds() == 60.0  # nothing scheduled: idle until a create or enable wakes it
    schedule(store, spec, max_concurrency=1)
    now[0] = T0 + 30 * S
    sched.tick()
    assert sched.wait_seconds() == 30.0  # the first tick is at T0 + 60 s
    now[0] = T0 + 60 * S
    assert len(sched.tick()) == 1 and sched.wait_seconds() == 60.0
    now[0] = T0 + 120 * S
    assert sched.tick() == [] and sched.wait_seconds() == 1.0  # held by max_concurrency: poll for a slot
