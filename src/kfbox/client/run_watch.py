"""Following a KFP run from its v2beta1 JSON: a live task table, state colours, durations.

Used by ``kfbox run --watch``, ``kfbox runs get`` and ``kfbox example``.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from kfbox.apis import FINAL_STATES as FINAL
from kfbox.apis import KFP as API
from kfbox.client.api import ApiClient

STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "RUNNING": "yellow", "CANCELED": "magenta",
               "CANCELING": "magenta", "PENDING": "dim"}


def watch_run(api: ApiClient, run_id: str, live: bool = True, console: Console | None = None,
              interval: float = 0.3) -> dict[str, Any]:
    """Poll a run every ``interval`` seconds until it ends; with ``live``, redraw its task table on ``console``
    meanwhile. A workflow that waits on the run to go on polls more often (each poll is one GET)."""
    body: dict[str, Any] = api.get(f"{API}/runs/{run_id}")
    if not live:
        while body["state"] not in FINAL:
            time.sleep(interval)
            body = api.get(f"{API}/runs/{run_id}")
        return body
    console = console or Console()
    with Live(task_table(body), console=console, refresh_per_second=4, transient=False) as display:
        while body["state"] not in FINAL:
            time.sleep(interval)
            body = api.get(f"{API}/runs/{run_id}")
            display.update(task_table(body))
    if not console.is_terminal:
        console.line()  # Live leaves the last frame unterminated when output is not a terminal
    return body


def task_table(body: dict[str, Any]) -> Table:
    table = Table(title=f"{body['display_name']}: {styled(body['state'])}", title_justify="left")
    for column in ("TASK", "STATE", "DURATION", "OUTPUTS"):
        table.add_column(column)
    for task in body.get("run_details", {}).get("task_details", []):
        if task.get("kind") == "dag":
            continue
        outputs = dict(task.get("parameters") or {})
        outputs.update({k: f"artifact {','.join(v['artifact_ids'])}" for k, v in (task.get("outputs") or {}).items()})
        state = task["state"] + (" (cached)" if task.get("cache_hit") else "")
        table.add_row(task["pod_name"], styled(state), duration(task, "start_time", "end_time"),
                      ", ".join(f"{k}={v}" for k, v in outputs.items())[:80])
    return table


def styled(state: str) -> str:
    style = STATE_STYLE.get(state.split()[0], "")
    return f"[{style}]{state}[/]" if style else state


def duration(body: dict[str, Any], start: str = "created_at", end: str = "finished_at") -> str:
    if not body.get(start):
        return ""
    began = datetime.datetime.fromisoformat(body[start].replace("Z", "+00:00"))
    ended = (datetime.datetime.fromisoformat(body[end].replace("Z", "+00:00")) if body.get(end)
             else datetime.datetime.now(datetime.UTC))
    return f"{(ended - began).total_seconds():.1f}s"
