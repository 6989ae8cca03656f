"""Recurring runs: KFP's ``V2beta1RecurringRun`` stored here, and the scheduler thread that fires them.

A recurring run holds what a run needs (a pipeline spec or a version reference, parameters,
experiment) plus a :class:`~kfbox.pipelines.triggers.Trigger`. The :class:`Scheduler` (one
daemon thread in the server) sleeps until the next tick (or a create/enable), asks each enabled
schedule for its next tick, and when one is due and fewer than ``max_concurrency`` of its runs
are still active (else it polls every second for a free slot),
creates a run through the one path every run takes (``PipelinesService.create_run``), then
records the tick. Ticks missed while the server was down are not back-filled unless the
schedule asked for catch-up (see :mod:`kfbox.pipelines.triggers`).

Interface (for the API, the CLI's server side and the engine)::

    store = ScheduleStore(db, catalog)
    row = store.create(body)                       # body: V2beta1RecurringRun JSON; 400s name the field
    scheduler = Scheduler(store, submit=lambda run_body: service.create_run(run_body).id)
    scheduler.start(); ...; scheduler.stop()
    scheduler.tick(now_ms=...)                     # one pass with an injected clock (tests)
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, defer, mapped_column

from kfbox.clock import now_ms
from kfbox.db import Base, Database
from kfbox.errors import InvalidInput, KfboxError, NotFound
from kfbox.pipelines import spec as specs
from kfbox.pipelines.catalog import Catalog, check_name, new_id
from kfbox.pipelines.listing import Fields, Listing
from kfbox.pipelines.tables import Run
from kfbox.pipelines.triggers import Trigger, iso

if TYPE_CHECKING:
    from kfbox.config import Settings

log = logging.getLogger(__name__)

ACTIVE = ("PENDING", "RUNNING", "CANCELING")
MAX_CONCURRENCY = 10  # KFP's API server refuses more
POLL_SECONDS = 1.0  # while a due tick waits for a free slot
IDLE_SECONDS = 60.0  # the longest sleep: creates and enables wake the thread; this bounds clock jumps
MAX_FIRES_PER_PASS = 100  # catch-up fires missed ticks in batches, so one schedule cannot starve the rest


class RecurringRun(Base):
    __tablename__ = "pipelines_recurring_runs"
    __table_args__ = (Index("ix_pipelines_recurring_runs_created", "created_ms"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    namespace: Mapped[str] = mapped_column(String(255), default="")
    experiment_id: Mapped[str] = mapped_column(String(36))
    pipeline_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    pipeline_version_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    pipeline_spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    pipeline_root: Mapped[str] = mapped_column(Text, default="")
    service_account: Mapped[str] = mapped_column(String(255), default="")
    max_concurrency: Mapped[int] = mapped_column(Integer)
    cron: Mapped[str | None] = mapped_column(String(255), nullable=True)
    interval_seconds: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    start_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    no_catchup: Mapped[bool] = mapped_column(Boolean)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    last_tick_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def trigger(self) -> Trigger:
        return Trigger(cron=self.cron, interval_seconds=self.interval_seconds, start_ms=self.start_ms,
                       end_ms=self.end_ms)

    def next_tick(self, now: int) -> int | None:
        return self.trigger.next_tick(self.last_tick_ms, self.created_ms, now, catchup=not self.no_catchup)


class ScheduledRun(Base):
    """Which run a recurring run started, and for which tick."""

    __tablename__ = "pipelines_recurring_run_runs"
    __table_args__ = (Index("ix_pipelines_recurring_run_runs_recurring", "recurring_run_id"),)

    run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    recurring_run_id: Mapped[str] = mapped_column(
        ForeignKey("pipelines_recurring_runs.id", ondelete="CASCADE",
                   name="fk_pipelines_recurring_run_runs_schedule"))
    scheduled_ms: Mapped[int] = mapped_column(BigInteger)


FIELDS: Fields = {"id": RecurringRun.id, "recurring_run_id": RecurringRun.id, "name": RecurringRun.display_name,
                  "display_name": RecurringRun.display_name, "created_at": RecurringRun.created_ms,
                  "updated_at": RecurringRun.updated_ms, "experiment_id": RecurringRun.experiment_id,
                  "description": RecurringRun.description}


def parse_time(value: Any, what: str) -> int | None:
    """An RFC 3339 time (as kfp.Client sends) to epoch ms; ``None`` when unset."""
    if value in (None, ""):
        return None
    try:
        stamp = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"{what} {value!r} is not an RFC 3339 time; e.g. 2026-01-31T09:00:00Z.") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return int(stamp.timestamp() * 1000)


def _int(value: Any, what: str) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be a whole number; got {value!r}.") from exc


def parse_trigger(body: Any) -> Trigger:
    if not isinstance(body, dict) or not (body.get("cron_schedule") or body.get("periodic_schedule")):
        raise InvalidInput("A recurring run needs trigger.cron_schedule {cron} or trigger.periodic_schedule "
                           "{interval_second}; e.g. {\"periodic_schedule\": {\"interval_second\": 3600}}.")
    if body.get("cron_schedule") and body.get("periodic_schedule"):
        raise InvalidInput("Give trigger.cron_schedule or trigger.periodic_schedule, not both.")
    kind = "cron_schedule" if body.get("cron_schedule") else "periodic_schedule"
    part = body[kind]
    if not isinstance(part, dict):
        raise InvalidInput(f"trigger.{kind} must be an object.")
    start = parse_time(part.get("start_time"), f"trigger.{kind}.start_time")
    end = parse_time(part.get("end_time"), f"trigger.{kind}.end_time")
    if kind == "cron_schedule":
        cron = part.get("cron")
        if not isinstance(cron, str) or not cron.strip():
            raise InvalidInput("trigger.cron_schedule.cron is required, e.g. '0 0 9 * * *' (seconds first).")
        return Trigger(cron=cron.strip(), start_ms=start, end_ms=end)
    interval = _int(part.get("interval_second"), "trigger.periodic_schedule.interval_second")
    return Trigger(interval_seconds=interval, start_ms=start, end_ms=end)


class ScheduleStore:
    """Recurring runs in the database; every method is one transaction."""

    def __init__(self, db: Database, catalog: Catalog, container_runtime: str | None = None,
                 settings: Settings | None = None) -> None:
        self.db = db
        self.catalog = catalog
        self.container_runtime = container_runtime  # settings.container_runtime; None: no container runs
        self.settings = settings  # checks dsl.importer URIs at create, as a run submit does; None: not checked

    def create(self, body: dict[str, Any], now: int | None = None) -> RecurringRun:
        """Validate a V2beta1RecurringRun body (everything a run from it would need) and store it."""
        name = check_name(body.get("display_name"), "Recurring run")
        trigger = parse_trigger(body.get("trigger"))
        raw = body.get("max_concurrency")
        concurrency = 1 if raw in (None, "") else _int(raw, "max_concurrency")
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InvalidInput(f"Max concurrency of a recurring run must be at least 1 and at most "
                               f"{MAX_CONCURRENCY}. Received {concurrency}.")
        mode = body.get("mode") or "MODE_UNSPECIFIED"
        if mode not in ("ENABLE", "DISABLE", "MODE_UNSPECIFIED"):
            raise InvalidInput(f"Recurring run mode {mode!r} is not valid; use ENABLE or DISABLE.")
        config = body.get("runtime_config") or {}
        if not isinstance(config, dict) or not isinstance(config.get("parameters") or {}, dict):
            raise InvalidInput("runtime_config.parameters must be an object of parameter values.")
        parameters = dict(config.get("parameters") or {})
        for key in ("description", "namespace", "service_account", "experiment_id"):
            if not isinstance(body.get(key) or "", str):
                raise InvalidInput(f"{key} must be a string; got {body[key]!r}.")
            if "\x00" in (body.get(key) or ""):  # PostgreSQL cannot store it
                raise InvalidInput(f"{key} contains a NUL character; remove it.")
        if not isinstance(body.get("no_catchup", False), bool | None):
            raise InvalidInput(f"no_catchup must be true or false; got {body['no_catchup']!r}.")
        reference = body.get("pipeline_version_reference") or {}
        if not isinstance(reference, dict):
            raise InvalidInput("pipeline_version_reference must be an object {pipeline_id, pipeline_version_id}.")
        version_id = reference.get("pipeline_version_id") or body.get("pipeline_version_id")
        pipeline_id = reference.get("pipeline_id")
        if not all(isinstance(v or "", str) for v in (version_id, pipeline_id)):
            raise InvalidInput("pipeline_version_reference ids must be strings.")
        spec = body.get("pipeline_spec")
        if spec is not None and (version_id or pipeline_id):
            raise InvalidInput("Give either pipeline_spec or pipeline_version_reference, not both.")
        stamp = now if now is not None else now_ms()
        with self.db.write() as s:
            if spec is None:
                if not (version_id or pipeline_id):
                    raise InvalidInput("A recurring run needs a pipeline: set pipeline_spec (the compiled pipeline) "
                                       "or pipeline_version_reference {pipeline_id, pipeline_version_id}.")
                version = (self.catalog.get_version(pipeline_id, version_id, s) if version_id
                           else self.catalog.latest_version(str(pipeline_id), s))
                pipeline_id, checked = version.pipeline_id, version.pipeline_spec
            else:
                spec = checked = specs.normalise(spec)
            specs.check_parameters(checked, parameters)
            problems = self.problems(checked)
            if problems:
                raise InvalidInput("This pipeline cannot run locally: " + "; ".join(problems) + ".")
            experiment = (self.catalog.get_experiment(body["experiment_id"], s) if body.get("experiment_id")
                          else self.catalog.default_experiment(s))
            if experiment.storage_state == "ARCHIVED":
                raise InvalidInput(f"Experiment {experiment.display_name!r} is archived; unarchive it or pick "
                                   "another experiment.")
            no_catchup = body.get("no_catchup")
            row = RecurringRun(
                id=new_id(), display_name=name, description=body.get("description") or "",
                namespace=body.get("namespace") or "", experiment_id=experiment.id, pipeline_id=pipeline_id,
                pipeline_version_id=version_id, pipeline_spec=spec, parameters=parameters,
                pipeline_root=str(config.get("pipeline_root") or ""),
                service_account=body.get("service_account") or "", max_concurrency=concurrency,
                cron=trigger.cron, interval_seconds=trigger.interval_seconds, start_ms=trigger.start_ms,
                end_ms=trigger.end_ms, enabled=mode == "ENABLE",
                no_catchup=True if no_catchup is None else bool(no_catchup),
                created_ms=stamp, updated_ms=stamp, last_tick_ms=None, run_count=0, error=None)
            s.add(row)
        return row

    def problems(self, spec: dict[str, Any]) -> list[str]:
        """What would fail every run of this schedule, as the run store judges a run (refused at create)."""
        from kfbox.pipelines import containers
        from kfbox.pipelines.orchestrator import ir

        refused = ir.check(ir.Pipeline(specs.pipeline_part(spec)), self.settings)
        executors = specs.pipeline_part(spec).get("deploymentSpec", {}).get("executors", {})
        wants_runtime = any(containers.is_container_component(e) and e["container"].get("image") not in specs.PVC_IMAGES
                            for e in executors.values())
        usable = (wants_runtime and self.container_runtime is not None
                  and containers.detect_runtime(self.container_runtime) is not None)
        return [*refused, *specs.unsupported_features(spec, containers=usable)]

    def get(self, recurring_run_id: str, session: Session | None = None) -> RecurringRun:
        if session is None:
            with self.db.read() as s:
                return self.get(recurring_run_id, s)
        row = session.get(RecurringRun, recurring_run_id)
        if row is None:
            raise NotFound(f"Recurring run {recurring_run_id!r} does not exist. List them with: kfbox schedules list")
        return row

    def list_schedules(self, listing: Listing, experiment_id: str | None = None) -> tuple[list[RecurringRun], str, int]:
        with self.db.read() as s:
            query = select(RecurringRun)
            if experiment_id:
                query = query.where(RecurringRun.experiment_id == experiment_id)
            return listing.apply(s, query, FIELDS)

    def delete(self, recurring_run_id: str) -> None:
        """The schedule goes; runs it started stay (as in KFP)."""
        with self.db.write() as s:
            row = self.get(recurring_run_id, s)
            s.query(ScheduledRun).filter(ScheduledRun.recurring_run_id == recurring_run_id).delete()
            s.delete(row)

    def set_enabled(self, recurring_run_id: str, enabled: bool) -> RecurringRun:
        with self.db.write() as s:
            row = self.get(recurring_run_id, s)
            if row.enabled != enabled:
                row.enabled, row.updated_ms = enabled, now_ms()
            return row

    def enabled(self) -> list[RecurringRun]:
        """Enabled schedules without their pipeline specs (read every second; the spec only when firing)."""
        with self.db.read() as s:
            return list(s.scalars(select(RecurringRun).options(defer(RecurringRun.pipeline_spec))
                                  .where(RecurringRun.enabled.is_(True)).order_by(RecurringRun.created_ms)))

    def active_runs(self, recurring_run_id: str) -> int:
        with self.db.read() as s:
            query = (select(func.count()).select_from(ScheduledRun).join(Run, Run.id == ScheduledRun.run_id)
                     .where(ScheduledRun.recurring_run_id == recurring_run_id, Run.state.in_(ACTIVE)))
            return int(s.scalar(query) or 0)

    def run_ids(self, recurring_run_id: str, limit: int = 20) -> list[str]:
        """The newest runs this schedule started (kfbox addition; KFP shows them in its UI)."""
        with self.db.read() as s:
            query = (select(ScheduledRun.run_id).where(ScheduledRun.recurring_run_id == recurring_run_id)
                     .order_by(ScheduledRun.scheduled_ms.desc()).limit(limit))
            return list(s.scalars(query))

    def record_tick(self, recurring_run_id: str, tick_ms: int, run_id: str | None, error: str | None) -> None:
        """The tick is consumed whether its run could be created or not (the error shows on the schedule)."""
        with self.db.write() as s:
            row = s.get(RecurringRun, recurring_run_id)
            if row is None:
                return
            row.last_tick_ms, row.error = tick_ms, error
            if run_id is not None:
                row.run_count += 1
                s.add(ScheduledRun(run_id=run_id, recurring_run_id=recurring_run_id, scheduled_ms=tick_ms))


def run_body(row: RecurringRun, tick_ms: int) -> dict[str, Any]:
    """The V2beta1Run the schedule submits for one tick."""
    body: dict[str, Any] = {
        "display_name": f"{row.display_name} {iso(tick_ms)}", "description": row.description,
        "experiment_id": row.experiment_id, "service_account": row.service_account,
        "runtime_config": {"parameters": row.parameters, "pipeline_root": row.pipeline_root},
        "recurring_run_id": row.id,
    }
    if row.pipeline_spec is not None:
        body["pipeline_spec"] = row.pipeline_spec
    else:
        body["pipeline_version_reference"] = {"pipeline_id": row.pipeline_id,
                                              "pipeline_version_id": row.pipeline_version_id}
    return body


class Scheduler:
    """The daemon thread that fires due schedules; ``submit`` creates a run and returns its id."""

    def __init__(self, store: ScheduleStore, submit: Callable[[dict[str, Any]], str],
                 clock: Callable[[], int] = now_ms, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.submit = submit
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.next_due_ms: int | None = None  # the earliest tick seen ahead in the last pass
        self.held = False  # a due tick waits (max_concurrency, catch-up batch, failed pass): poll
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kfbox-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wake(self) -> None:
        """Look at the schedules now (after a create or enable), not at the next poll."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # one bad pass (a database hiccup) must not end scheduling
                log.exception("scheduler pass failed; trying again in %.0f s", self.poll_seconds)
                self.held = True
            self._wake.wait(self.wait_seconds())
            self._wake.clear()

    def wait_seconds(self) -> float:
        """Until the next tick (woken early by a create or enable); a held tick polls for a free slot."""
        if self.held:
            return self.poll_seconds
        if self.next_due_ms is None:
            return IDLE_SECONDS
        return min(IDLE_SECONDS, max(0.0, (self.next_due_ms - self.clock()) / 1000))

    def tick(self, now_ms: int | None = None) -> list[str]:
        """One pass over the enabled schedules; returns the ids of the runs it created."""
        created: list[str] = []
        self.next_due_ms, self.held = None, False
        for row in self.store.enabled():
            for _ in range(MAX_FIRES_PER_PASS):
                now = now_ms if now_ms is not None else self.clock()
                due = row.next_tick(now)
                if due is None or due > now:
                    self._ahead(due)
                    break
                if self.store.active_runs(row.id) >= row.max_concurrency:
                    self.held = True  # the tick waits for a run to finish, as KFP's controller does
                    break
                run_id, error = self._submit(row, due)
                self.store.record_tick(row.id, due, run_id, error)
                row.last_tick_ms = due
                if run_id is None:  # the tick is spent; the next one is when to look again
                    following = row.next_tick(now)
                    if following is not None and following <= now:
                        self.held = True  # catch-up: retry the next missed tick at the next poll
                    self._ahead(following)
                    break
                created.append(run_id)
            else:
                self.held = True  # catch-up has more missed ticks: go on at the next poll
        return created

    def _ahead(self, due: int | None) -> None:
        if due is not None and (self.next_due_ms is None or due < self.next_due_ms):
            self.next_due_ms = due

    def _submit(self, row: RecurringRun, tick_ms: int) -> tuple[str | None, str | None]:
        try:
            run_id = self.submit(run_body(self.store.get(row.id), tick_ms))
        except KfboxError as exc:
            log.warning("recurring run %s (%s): the run for %s was not created: %s", row.id, row.display_name,
                        iso(tick_ms), exc.message)
            return None, f"The run for {iso(tick_ms)} was not created: {exc.message}"
        log.info("recurring run %s (%s) started run %s for %s", row.id, row.display_name, run_id, iso(tick_ms))
        return run_id, None
