"""The run child process: ``python -m kfbox.pipelines.worker RUN_DIR`` (or ``--spare``).

Reads ``RUN_DIR/job.json``, runs the pipeline (see :mod:`kfbox.pipelines.orchestrator`)
and reports to ``RUN_DIR/events.jsonl``. It never touches the database: the server owns the
bookkeeping. The server starts it as a process-group leader, so cancelling kills every task.

The server starts it as a warm child (:mod:`kfbox.server.warm`): each event, once appended to
the file (the durable record the server applies and a restarted server resumes from), is
announced on the channel, so the server applies it at once instead of polling the file; the
channel's end tells the server the worker is gone.

A *spare* worker (``--spare``) imports kfp ahead of time and waits for the server to hand over a
run folder on its channel; the server keeps one ready, so a submitted run does not pay the
interpreter start and kfp import.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from kfbox.pipelines.events import EventWriter
from kfbox.server import warm
from kfbox.server.processes import die_with_parent
from kfbox.server.warm import Channel


def run(run_dir: Path, channel: Channel | None = None) -> int:
    events = EventWriter(run_dir / "events.jsonl", channel)
    try:
        from kfbox.pipelines.orchestrator.dag import Engine

        job = json.loads((run_dir / "job.json").read_text())
        state, error = Engine(job, events).run()
    except Exception as exc:  # noqa: BLE001 - every failure must reach the run's record
        traceback.print_exc()
        state, error = "FAILED", f"kfbox could not run the pipeline: {type(exc).__name__}: {exc}"
    events.emit("run_finished", state=state, error=error)
    return 0


def wait_as_spare(channel: Channel) -> int:
    """Import what a run needs, then wait for the server to hand over a run dir (or to go away)."""
    from kfbox.pipelines.orchestrator.dag import preload

    # The import runs at idle priority (only on CPU the running tasks leave free); the channel's
    # reader thread, started first so it keeps normal priority, restores it the moment a run is
    # handed over, then stays to end the process if the server goes (portable; Linux also has the
    # parent-death signal).
    handed: dict[str, Any] = {}
    arrived = threading.Event()
    main_thread = os.getpid()  # Linux: the main thread's id is the process id

    def read() -> None:
        message = channel.recv()
        if message is None:
            os._exit(0)  # the server died: nobody will hand over a run
        handed.update(message.get("assign") or {})
        _normal_priority(main_thread)
        arrived.set()
        for _ in channel:
            pass
        os._exit(0)

    threading.Thread(target=read, name="kfbox-spare-channel", daemon=True).start()
    _idle_priority()
    preload()
    arrived.wait()
    run_dir = Path(str(handed["run_dir"]))
    os.chdir(run_dir)
    with open(run_dir / "worker.log", "ab") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    return run(run_dir, channel)


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
    if not hasattr(os, "sched_setscheduler"):
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))


def main(argv: list[str]) -> int:
    parent = os.getppid()
    die_with_parent()  # a worker never outlives the server (issue 8, item 13); the run resumes on restart
    if os.getppid() != parent:
        return 0
    channel = warm.inherited_channel()
    if argv[1:] == ["--spare"]:
        if channel is None:
            print("--spare needs the channel of a kfbox server (kfbox.server.warm)", file=sys.stderr)
            return 2
        return wait_as_spare(channel)
    if channel is not None:
        warm.exit_when_parent_closes(channel)
    return run(Path(argv[1]), channel)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
