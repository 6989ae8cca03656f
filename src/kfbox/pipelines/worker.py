"""The run child process: ``python -m kfbox.pipelines.worker RUN_DIR``.

Reads ``RUN_DIR/job.json``, runs the pipeline with kfp.local (see :mod:`kfbox.pipelines.engine`)
and reports to ``RUN_DIR/events.jsonl``. It never touches the database: the server owns the
bookkeeping. The server starts it as a process-group leader, so cancelling kills every task.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from kfbox.pipelines.events import EventWriter


def main(argv: list[str]) -> int:
    run_dir = Path(argv[1])
    events = EventWriter(run_dir / "events.jsonl")
    try:
        from kfbox.pipelines.engine import Engine

        job = json.loads((run_dir / "job.json").read_text())
        state, error = Engine(job, events).run()
    except Exception as exc:  # noqa: BLE001 - every failure must reach the run's record
        traceback.print_exc()
        state, error = "FAILED", f"kfbox could not run the pipeline: {type(exc).__name__}: {exc}"
    events.emit("run_finished", state=state, error=error)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
