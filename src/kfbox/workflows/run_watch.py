"""Follow a KFP run through ``kfp.Client`` with a live task table, as ``kfbox example`` shows it."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

FINAL_STATES = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}
STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "CANCELED": "yellow", "RUNNING": "cyan", "SKIPPED": "dim",
               "CACHED": "green"}


def _state(value: Any) -> str:
    return str(value or "PENDING").rsplit(".", 1)[-1].upper()


def task_rows(run: Any) -> list[tuple[str, str]]:
    details = getattr(getattr(run, "run_details", None), "task_details", None) or []
    rows = []
    for task in details:
        name = task.display_name or task.task_id
        if name in {"root", "root-driver"} or (name or "").startswith("for-loop"):
            continue
        rows.append((str(name), _state(task.state)))
    return rows


def _table(title: str, run: Any, elapsed: float) -> Table:
    table = Table(title=f"{title} — {_state(run.state)} ({elapsed:.1f}s)", title_justify="left")
    table.add_column("task")
    table.add_column("state")
    for name, state in task_rows(run):
        table.add_row(name, f"[{STATE_STYLE.get(state, 'white')}]{state}[/]")
    return table


def watch_run(client: Any, run_id: str, title: str, console: Console, timeout: float = 600.0,
              interval: float = 0.3) -> Any:
    """Poll ``client.get_run`` until the run ends; return the final run object."""
    started = time.monotonic()
    run = client.get_run(run_id)
    with Live(_table(title, run, 0.0), console=console, refresh_per_second=8, transient=False) as live:
        while _state(run.state) not in FINAL_STATES:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"run {run_id} did not finish within {timeout:.0f}s")
            time.sleep(interval)
            run = client.get_run(run_id)
            live.update(_table(title, run, time.monotonic() - started))
        live.update(_table(title, run, time.monotonic() - started))
    return run
