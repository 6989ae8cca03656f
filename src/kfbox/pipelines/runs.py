"""Runs and their tasks: creation with validation, listing, and the state machine the worker drives.

States follow KFP's ``V2beta1RuntimeState``: PENDING -> RUNNING -> SUCCEEDED | FAILED, and
CANCELING -> CANCELED on terminate. The worker's events (see :mod:`kfbox.pipelines.events`)
are applied here, so every write to a run goes through one module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kfbox.apis import FINAL_STATES as FINAL
from kfbox.clock import now_ms
from kfbox.db import Database
from kfbox.errors import Conflict, InvalidInput, NotFound
from kfbox.pipelines import spec as specs
from kfbox.pipelines.catalog import Catalog, new_id
from kfbox.pipelines.listing import Fields, Listing
from kfbox.pipelines.orchestrator import ir
from kfbox.pipelines.tables import Artifact, Experiment, Run, Task

if TYPE_CHECKING:
    from kfbox.config import Settings

ACTIVE = ("PENDING", "RUNNING", "CANCELING")
_IN_CHUNK = 500  # task ids per IN (...) query: under SQLite's bound-parameter limit
RUN_FIELDS: Fields = {"id": Run.id, "run_id": Run.id, "name": Run.display_name, "display_name": Run.display_name,
                      "created_at": Run.created_ms, "finished_at": Run.finished_ms,
                      "scheduled_at": Run.scheduled_ms, "state": Run.state, "storage_state": Run.storage_state,
                      "experiment_id": Run.experiment_id, "pipeline_version_id": Run.pipeline_version_id,
                      "description": Run.description}


class RunStore:
    def __init__(self, db: Database, catalog: Catalog, container_runtime: str | None = None,
                 settings: Settings | None = None) -> None:
        self.db = db
        self.catalog = catalog
        self.container_runtime = container_runtime  # settings.container_runtime; None: no container runs
        self.settings = settings  # checks dsl.importer URIs at submit; None: checked when the task runs

    def create(self, body: dict[str, Any]) -> Run:
        """Validate a V2beta1Run body and store it PENDING (or FAILED when it cannot run here)."""
        name = body.get("display_name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("Run display_name is required (a non-empty string).")
        config = body.get("runtime_config") or {}
        if not isinstance(config, dict) or not isinstance(config.get("parameters") or {}, dict):
            raise InvalidInput("runtime_config.parameters must be an object of parameter values.")
        reference = body.get("pipeline_version_reference") or {}
        version_id = reference.get("pipeline_version_id") or body.get("pipeline_version_id")
        pipeline_id = reference.get("pipeline_id")
        spec = body.get("pipeline_spec")
        if spec is not None and (version_id or pipeline_id):
            raise InvalidInput("Give either pipeline_spec or pipeline_version_reference, not both.")
        with self.db.write() as s:
            if spec is None:
                if not (version_id or pipeline_id):
                    raise InvalidInput("A run needs a pipeline: set pipeline_spec (the compiled pipeline) or "
                                       "pipeline_version_reference {pipeline_id, pipeline_version_id}.")
                version = (self.catalog.get_version(pipeline_id, version_id, s) if version_id
                           else self.catalog.latest_version(str(pipeline_id), s))
                spec, pipeline_id, version_id = version.pipeline_spec, version.pipeline_id, version.id
            spec = specs.normalise(spec)
            parameters = specs.check_parameters(spec, config.get("parameters"))
            experiment = (self.catalog.get_experiment(body["experiment_id"], s) if body.get("experiment_id")
                          else self.catalog.default_experiment(s))
            if experiment.storage_state == "ARCHIVED":
                raise InvalidInput(f"Experiment {experiment.display_name!r} is archived; unarchive it "
                                   "or pick another experiment.")
            refused = ir.check(ir.Pipeline(specs.pipeline_part(spec)), self.settings)
            if refused:
                raise InvalidInput("kfbox's engine cannot run this pipeline: " + "; ".join(refused) + ". Run it on "
                                   "a Kubeflow cluster with: kfbox run FILE --host URL")
            problems = specs.unsupported_features(spec, containers=self._containers_usable(spec))
            created = now_ms()
            run = Run(id=new_id(), experiment_id=experiment.id, display_name=name, pipeline_spec=spec,
                      description=body.get("description") or "", pipeline_id=pipeline_id,
                      pipeline_version_id=version_id, parameters=parameters,
                      pipeline_root=str(config.get("pipeline_root") or ""),
                      service_account=body.get("service_account") or "", storage_state="AVAILABLE",
                      state="PENDING", state_history=[{"ms": created, "state": "PENDING"}], created_ms=created,
                      scheduled_ms=created)
            if problems:
                run.error = "This pipeline cannot run locally: " + "; ".join(problems) + "."
                run.state, run.finished_ms = "FAILED", created
                run.state_history = [*run.state_history, {"ms": created, "state": "FAILED"}]
            s.add(run)
            s.execute(update(Experiment).where(Experiment.id == experiment.id).values(last_run_ms=created))
        return run

    def _containers_usable(self, spec: dict[str, Any]) -> bool:
        """Whether the configured container runtime answers (only asked when the spec has a container component)."""
        from kfbox.pipelines import containers

        executors = specs.pipeline_part(spec).get("deploymentSpec", {}).get("executors", {})
        if self.container_runtime is None or not any(
                containers.is_container_component(e) and e["container"].get("image") not in specs.PVC_IMAGES
                for e in executors.values()):
            return False
        return containers.detect_runtime(self.container_runtime) is not None

    def get(self, run_id: str, session: Session | None = None) -> Run:
        if session is None:
            with self.db.read() as s:
                return self.get(run_id, s)
        row = session.get(Run, run_id)
        if row is None:
            raise NotFound(f"Run {run_id!r} does not exist. List runs with: kfbox runs list")
        return row

    def details(self, run_id: str) -> tuple[Run, list[Task], list[Artifact]]:
        with self.db.read() as s:
            run = self.get(run_id, s)
            tasks = list(s.scalars(select(Task).where(Task.run_id == run_id).order_by(Task.created_ms, Task.id)))
            artifacts = list(s.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)))
        return run, tasks, artifacts

    def list_runs(self, listing: Listing, experiment_id: str | None = None) -> tuple[list[Run], str, int]:
        with self.db.read() as s:
            query = select(Run)
            if experiment_id:
                query = query.where(Run.experiment_id == experiment_id)
            return listing.apply(s, query, RUN_FIELDS)

    def set_storage(self, run_id: str, state: str) -> None:
        with self.db.write() as s:
            self.get(run_id, s).storage_state = state

    def delete(self, run_id: str) -> None:
        with self.db.write() as s:
            run = self.get(run_id, s)
            s.query(Artifact).filter(Artifact.run_id == run_id).delete()
            s.query(Task).filter(Task.run_id == run_id).delete()
            s.delete(run)

    def artifact(self, artifact_id: str) -> Artifact:
        with self.db.read() as s:
            row = s.get(Artifact, int(artifact_id)) if artifact_id.isdigit() else None
        if row is None:
            raise NotFound(f"Artifact {artifact_id!r} does not exist; artifact ids are listed in a run's "
                           "task_details[].outputs.")
        return row

    def task(self, run_id: str, task: str) -> Task:
        """A task by id, display name or path."""
        with self.db.read() as s:
            rows = list(s.scalars(select(Task).where(Task.run_id == run_id)))
        for row in rows:
            if task in (row.id, row.path):
                return row
        named = [r for r in rows if r.name == task]
        if len(named) == 1:
            return named[0]
        known = ", ".join(sorted({r.path for r in rows if r.kind != "dag"})) or "none yet"
        hint = " (several tasks have that name; use the path)" if named else ""
        raise NotFound(f"Run {run_id!r} has no task {task!r}{hint}. Its tasks: {known}.")

    # the state machine
    def transition(self, session: Session, run: Run, state: str, error: str | None = None) -> None:
        if run.state == state:
            return
        stamp = now_ms()
        run.state = state
        run.state_history = [*run.state_history, {"ms": stamp, "state": state}]
        if error:
            run.error = error
        if state in FINAL:
            run.finished_ms = stamp
            running = list(session.scalars(select(Task).where(Task.run_id == run.id, Task.state == "RUNNING")))
            seq = bump_task_seq(session, run.id) if running else 0
            for task in running:
                task.state = "CANCELED" if state == "CANCELED" else "FAILED"
                task.finished_ms, task.seq = stamp, seq

    def finish(self, run_id: str, state: str, error: str | None = None, only_if: tuple[str, ...] = ACTIVE) -> bool:
        with self.db.write() as s:
            run = self.get(run_id, s)
            if run.state not in only_if:
                return False
            self.transition(s, run, state, error)
            return True

    def any(self) -> bool:
        """Whether this database holds any run at all."""
        with self.db.read() as s:
            return s.scalars(select(Run.id).limit(1)).first() is not None

    def next_pending(self) -> Run | None:
        with self.db.read() as s:
            return s.scalars(select(Run).where(Run.state == "PENDING").order_by(Run.created_ms, Run.id)).first()

    def mark_started(self, run_id: str, pid: int) -> bool:
        with self.db.write() as s:
            run = self.get(run_id, s)
            if run.state != "PENDING":
                return False
            run.pid = pid
            self.transition(s, run, "RUNNING")
            return True

    def set_pid(self, run_id: str, pid: int) -> None:
        with self.db.write() as s:
            self.get(run_id, s).pid = pid

    def recover(self) -> list[tuple[str, int | None]]:
        """At start: runs a stopped server left RUNNING are queued again, to resume from their finished tasks.

        Their workers died with the server; the next worker re-reads the run's events and skips every
        task that had finished (its outputs are in the record). CANCELING runs end CANCELED.
        Returns (run id, worker pid) of each, so the caller can kill workers that outlived the server.
        """
        with self.db.write() as s:
            stale = list(s.scalars(select(Run).where(Run.state.in_(("RUNNING", "CANCELING")))))
            for run in stale:
                if run.state == "CANCELING":
                    self.transition(s, run, "CANCELED")
                    continue
                stamp = now_ms()
                run.state = "PENDING"
                run.state_history = [*run.state_history, {"ms": stamp, "state": "PENDING"}]
            return [(run.id, run.pid) for run in stale]

    def retry(self, run_id: str) -> Run:
        """Queue a FAILED or CANCELED run again: its unfinished tasks go, the SUCCEEDED ones stay and are reused."""
        with self.db.write() as s:
            run = self.get(run_id, s)
            if run.state not in ("FAILED", "CANCELED"):
                raise Conflict(f"Run {run_id!r} is {run.state}; only a FAILED or CANCELED run can be retried.")
            if run.storage_state == "ARCHIVED":
                raise InvalidInput(f"Run {run_id!r} is archived; unarchive it before retrying.")
            redo = [t.id for t in s.scalars(select(Task).where(Task.run_id == run_id, Task.state != "SUCCEEDED"))]
            redo += [t.id for t in s.scalars(select(Task).where(Task.run_id == run_id, Task.kind == "dag"))]
            s.query(Artifact).filter(Artifact.run_id == run_id, Artifact.task_id.in_(redo)).delete()
            s.query(Task).filter(Task.run_id == run_id, Task.id.in_(redo)).delete()
            stamp = now_ms()
            run.state, run.error, run.finished_ms = "PENDING", None, None
            run.state_history = [*run.state_history, {"ms": stamp, "state": "PENDING"}]
            return run

    def fail_unresumable(self, run_id: str, reason: str) -> None:
        self.finish(run_id, "FAILED", f"The kfbox server stopped while this run was running and it cannot "
                    f"resume: {reason}. Start it again with: kfbox run (or kfp.Client.run_pipeline).",
                    only_if=("PENDING", "RUNNING"))

    def apply(self, run_id: str, event: dict[str, Any]) -> None:
        """One worker event, in its own transaction."""
        self.apply_all(run_id, [event])

    def apply_all(self, run_id: str, events: list[dict[str, Any]]) -> None:
        """Worker events in one transaction (a 200-task loop writes 800; one commit each cost the tasks CPU).

        The batch's tasks are read in one query up front and nothing is flushed until the commit: a
        lookup per event, each flushing the row before it, cost a millisecond an event.
        """
        if not events:
            return
        ids = sorted({str(e["task_id"]) for e in events if e.get("task_id")})
        with self.db.write() as s, s.no_autoflush:
            seq = bump_task_seq(s, run_id) if ids else 0
            known: dict[str, Task] = {}
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start:start + _IN_CHUNK]
                known.update((t.id, t) for t in s.scalars(select(Task).where(Task.id.in_(chunk))))
            for event in events:
                self._apply(s, run_id, event, known, seq)

    def _apply(self, s: Session, run_id: str, event: dict[str, Any], known: dict[str, Task], seq: int) -> None:
        kind = event.get("event")
        if kind == "task_started":
            if event["task_id"] in known:  # replayed after a restart
                return
            known[event["task_id"]] = row = Task(
                id=event["task_id"], run_id=run_id, parent_id=event.get("parent_id"),
                name=event["name"], path=event["path"], kind=event.get("kind", "container"),
                state="RUNNING", cache_hit=False, parameters={}, log_path=event.get("log"),
                created_ms=event["ms"], started_ms=event["ms"], seq=seq,
                details={"inputs": event.get("inputs") or {},
                         "state_history": [{"ms": event["ms"], "state": "RUNNING"}]})
            s.add(row)
        elif kind == "task_finished":
            task = known.get(event["task_id"])
            if task is None or task.state in FINAL:
                return
            task.state, task.seq = event["state"], seq
            task.finished_ms = event["ms"]
            task.error = event.get("error")
            task.cache_hit = bool(event.get("cache_hit"))
            task.parameters = event.get("parameters") or {}
            details = dict(task.details or {})
            details.update(event.get("detail") or {})
            details["state_history"] = [*details.get("state_history", []),
                                        {"ms": event["ms"], "state": event["state"], "error": event.get("error")}]
            task.details = details
            for art in event.get("artifacts") or []:
                s.add(Artifact(run_id=run_id, task_id=task.id, direction="output", key=art["key"],
                               name=art.get("name") or art["key"], uri=art.get("uri") or "",
                               schema_title=art.get("schema_title") or "system.Artifact",
                               artifact_metadata=art.get("metadata") or {}, created_ms=event["ms"]))
        elif kind == "run_finished":
            s.flush()  # the batch's task states first: the transition fails what is still RUNNING in the table
            run = self.get(run_id, s)
            if run.state in ("RUNNING", "PENDING"):
                self.transition(s, run, event["state"], event.get("error"))


def bump_task_seq(session: Session, run_id: str) -> int:
    """The run's next task change number, for the tasks this transaction writes (see ``Run.task_seq``).

    The UPDATE holds the run's row until commit, so two writers to one run take numbers in commit
    order (SQLite has one writer anyway): a reader that saw number N has seen every write up to N.
    """
    session.execute(update(Run).where(Run.id == run_id).values(task_seq=Run.task_seq + 1)
                    .execution_options(synchronize_session=False))
    return int(session.scalar(select(Run.task_seq).where(Run.id == run_id)) or 0)
