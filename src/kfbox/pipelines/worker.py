"""The run child process: ``python -m kfbox.pipelines.worker RUN_DIR`` (or ``--spare DIR``).

Reads ``RUN_DIR/job.json``, runs the pipeline (see :mod:`kfbox.pipelines.orchestrator`)
and reports to ``RUN_DIR/events.jsonl``. It never touches the database: the server owns the
bookkeeping. The server starts it as a process-group leader, so cancelling kills every task.

A *spare* worker imports kfp ahead of time and waits for ``DIR/go`` to name its run dir; the
server keeps one ready, so a submitted run does not pay the interpreter start and kfp import.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path

from kfbox.pipelines.events import EventWriter

SPARE_POLL_SECONDS = 0.01


def run(run_dir: Path) -> int:
    events = EventWriter(run_dir / "events.jsonl")
    try:
        from kfbox.pipelines.orchestrator.dag import Engine

        job = json.loads((run_dir / "job.json").read_text())
        state, error = Engine(job, events).run()
    except Exception as exc:  # noqa: BLE001 - every failure must reach the run's record
        traceback.print_exc()
        state, error = "FAILED", f"kfbox could not run the pipeline: {type(exc).__name__}: {exc}"
    events.emit("run_finished", state=state, error=error)
    return 0


def wait_as_spare(spare: Path) -> int:
    """Import what a run needs, then wait for the server to hand over a run dir (or to go away)."""
    from kfbox.pipelines.orchestrator.dag import preload

    parent = os.getppid()
    go = spare / "go"
    # The import runs at idle priority (only on CPU the running tasks leave free); a watcher thread,
    # started first so it keeps normal priority, restores it the moment a run is handed over.
    threading.Thread(target=_restore_priority_on, args=(go, parent), daemon=True).start()
    idle = _idle_priority()
    preload()
    while not go.exists():
        if os.getppid() != parent:  # the server died: nobody will hand over a run
            return 0
        time.sleep(SPARE_POLL_SECONDS)
    if idle:
        _normal_priority(0)
    run_dir = Path(go.read_text().strip())
    os.chdir(run_dir)
    with open(run_dir / "worker.log", "ab") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    shutil.rmtree(spare, ignore_errors=True)
    return run(run_dir)


def _idle_priority() -> bool:
    """Switch this thread to SCHED_IDLE, only where it may switch back (root or RLIMIT_NICE >= 20)."""
    if not hasattr(os, "sched_setscheduler"):
        return False
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    if os.geteuid() != 0 and soft != resource.RLIM_INFINITY and soft < 20:
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        return False
    return True


def _normal_priority(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


def _restore_priority_on(go: Path, parent: int) -> None:
    main_thread = os.getpid()  # Linux: the main thread's id is the process id
    while not go.exists() and os.getppid() == parent:
        time.sleep(SPARE_POLL_SECONDS)
    _normal_priority(main_thread)


def main(argv: list[str]) -> int:
    from kfbox.pipelines.orchestrator.launch import die_with_parent

    parent = os.getppid()
    die_with_parent()  # a worker never outlives the server (issue 8, item 13); the run resumes on restart
    if os.getppid() != parent:
        return 0
    if len(argv) == 3 and argv[1] == "--spare":
        return wait_as_spare(Path(argv[2]))
    return run(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
