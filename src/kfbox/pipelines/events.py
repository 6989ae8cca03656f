"""The worker -> server channel: a JSON-lines file per run, appended by the worker, tailed by the server.

A file (not a pipe) survives either side restarting, and the server stays the only writer
of the database: it reads new complete lines and applies them. A worker started as a warm
child (``kfbox.server.warm``) also announces each event on its channel once the line is in the
file, so the server reads the file when there is news instead of polling it.

Events: ``task_started`` {task_id, parent_id, name, path, kind, log}, ``task_finished``
{task_id, state, error, cache_hit, parameters, artifacts}, ``run_finished`` {state, error};
every event carries ``ms`` (epoch milliseconds).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kfbox.server.warm import Channel


class EventWriter:
    def __init__(self, path: Path, channel: Channel | None = None) -> None:
        self.path = path
        self.channel = channel
        self._lock = threading.Lock()  # kfp.local runs ParallelFor iterations on threads

    def emit(self, event: str, **fields: Any) -> None:
        ms = int(time.time() * 1000)
        line = json.dumps({"event": event, "ms": ms, **fields}, default=str)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.channel is not None:  # after the write: the server finds the line when it looks
            self.channel.send({"event": {"event": event, "ms": ms}})


class EventReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        """New complete lines since the last call (a half-written last line waits for the next)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        events = []
        for line in data[: end + 1].splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events
