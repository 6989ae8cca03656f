"""The run page's live polls read only the tasks that changed: every write to a run's tasks takes the
run's next change number (``Run.task_seq``) as the tasks' ``seq``, and :class:`LiveTasks` reads the
rows above the number it holds. On each database backend, through the run store's own write path."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from sqlalchemy import event, insert, select

from kfbox.db import Database
from kfbox.pipelines.catalog import Catalog
from kfbox.pipelines.runs import RunStore, bump_task_seq
from kfbox.pipelines.tables import Experiment, Run
from kfbox.ui.run_live import LiveTasks, generation

SPEC = {"pipelineInfo": {"name": "changes"}, "root": {"dag": {"tasks": {}}}, "components": {},
        "deploymentSpec": {"executors": {}}}


def new_run(db: Database) -> str:
    now = int(time.time() * 1000)
    run_id, experiment = str(uuid.uuid4()), str(uuid.uuid4())
    with db.write() as s:
        s.execute(insert(Experiment), [{"id": experiment, "display_name": f"exp-{run_id[:6]}", "description": "",
                                        "namespace": "", "storage_state": "AVAILABLE", "created_ms": now}])
        s.execute(insert(Run), [{"id": run_id, "experiment_id": experiment, "display_name": "changes",
                                 "description": "", "pipeline_spec": SPEC, "parameters": {}, "pipeline_root": "",
                                 "service_account": "", "storage_state": "AVAILABLE", "state": "RUNNING",
                                 "state_history": [{"ms": now, "state": "PENDING"}, {"ms": now, "state": "RUNNING"}],
                                 "created_ms": now, "scheduled_ms": now}])
    return run_id


def started(task_id: str, ms: int) -> dict[str, Any]:
    return {"event": "task_started", "task_id": task_id, "name": task_id, "path": task_id, "ms": ms}


def read(db: Database, live: LiveTasks, run_id: str) -> tuple[Any, list[str]]:
    """(the table LiveTasks holds after a poll, the task queries the poll ran)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM pipelines_tasks" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        with db.read() as s:
            run = s.scalar(select(Run).where(Run.id == run_id))
            assert run is not None
            table = live.read(s, run_id, generation(run.state_history), run.task_seq)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return table, seen


def test_a_poll_reads_only_the_tasks_written_since(database_url: str) -> None:
    db = Database(database_url)
    try:
        db.upgrade()
        store, live = RunStore(db, Catalog(db)), LiveTasks()
        run_id = new_run(db)
        store.apply_all(run_id, [started(f"t{i}", 1000 + i) for i in range(5)])
        first, queries = read(db, live, run_id)
        assert list(first.tasks) == [f"t{i}" for i in range(5)] and len(queries) == 1
        assert read(db, live, run_id)[1] == []  # nothing written since: no task is read

        store.apply(run_id, {"event": "task_finished", "task_id": "t3", "state": "SUCCEEDED", "ms": 2000})
        table, queries = read(db, live, run_id)
        [query] = queries
        assert "pipelines_tasks.seq >" in query
        assert [(t["task_id"], t["state"]) for t in table.changed_after(first.seq)] == [("t3", "SUCCEEDED")]
        assert table.tasks["t0"]["state"] == "RUNNING" and len(table.tasks) == 5

        # the run ends FAILED: the tasks still RUNNING are failed in the same write, and a poll sees them
        store.apply(run_id, {"event": "run_finished", "state": "FAILED", "error": "t4 failed", "ms": 3000})
        ended, _ = read(db, live, run_id)
        assert {t["task_id"]: t["state"] for t in ended.changed_after(table.seq)} == {
            "t0": "FAILED", "t1": "FAILED", "t2": "FAILED", "t4": "FAILED"}

        # a retry deletes the tasks it reruns: the run's next generation is read whole, without them
        store.retry(run_id)
        again, queries = read(db, live, run_id)
        assert again.generation == ended.generation + 1 and list(again.tasks) == ["t3"]
        assert "pipelines_tasks.seq >" not in queries[0]
    finally:
        db.dispose()


def test_writers_to_one_run_take_change_numbers_in_commit_order(database_url: str) -> None:
    """A reader that saw number N has seen every write numbered N or less: a second writer waits for
    the first one's commit before it takes the next number."""
    db = Database(database_url)
    try:
        db.upgrade()
        run_id = new_run(db)
        order: list[tuple[str, int]] = []

        def second() -> None:
            with db.write() as s:
                order.append(("second", bump_task_seq(s, run_id)))

        with db.write() as s:
            order.append(("first", bump_task_seq(s, run_id)))
            other = threading.Thread(target=second)
            other.start()
            other.join(0.5)
            assert other.is_alive(), "the second writer took a number while the first was uncommitted"
        other.join(30)
        assert order == [("first", 1), ("second", 2)]
    finally:
        db.dispose()
