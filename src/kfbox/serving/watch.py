"""Watch: the stream of ``ADDED``/``MODIFIED``/``DELETED`` events behind ``?watch=true``.

:class:`EventLog` keeps the last :data:`HISTORY` events in memory. A watch from
``resourceVersion=N`` replays the events after N, then follows new ones; when N is older than
what the log still holds (evicted, or from before this server started) the watch gets an
``ERROR`` event carrying a 410 ``Status`` ("Expired"), and the client lists again — what a
Kubernetes API server does after etcd compaction. Without a ``resourceVersion`` (or with
``"0"``) a watch starts with an ``ADDED`` event per existing object.

:class:`StatusTracker` turns status changes (a replica became ready, a rollout finished) into
``MODIFIED`` events with a new resourceVersion, so ``kubectl wait`` and the kserve SDK's
``wait_isvc_ready(watch=True)`` see readiness as it happens.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from kfbox.apis import SERVING_API_VERSION as API_VERSION
from kfbox.serving.kube_api import bad_request, status_body
from kfbox.serving.spec import KIND

HISTORY = 1000
BOOKMARK_SECONDS = 1.0
"""How often an idle watch that asked for bookmarks gets one (Kubernetes: about a minute)."""
DEFAULT_TIMEOUT_SECONDS = 1800.0
TRACK_SECONDS = 0.2

Matcher = Callable[[dict[str, Any]], bool]


@dataclasses.dataclass(frozen=True)
class Event:
    version: int
    type: str
    object: dict[str, Any]


class EventLog:
    """The recent events, in resourceVersion order, and a way to wait for the next one."""

    def __init__(self, floor: int, size: int = HISTORY) -> None:
        self.floor = floor
        """Every event with a version above this one is still here."""
        self.latest = floor
        self.events: collections.deque[Event] = collections.deque()
        self.size = size
        self._changed = asyncio.Event()

    def record(self, kind: str, obj: dict[str, Any], version: int) -> None:
        self.events.append(Event(version, kind, obj))
        while len(self.events) > self.size:
            self.floor = self.events.popleft().version
        self.latest = max(self.latest, version)
        self._changed.set()
        self._changed = asyncio.Event()

    def since(self, version: int) -> list[Event] | None:
        """Events after ``version``, or None when some of them are no longer kept."""
        if version < self.floor:
            return None
        return [e for e in self.events if e.version > version]

    def waiter(self) -> asyncio.Event:
        """Set at the next event: take it before reading, so no event slips between read and wait."""
        return self._changed


async def _wait(changed: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), timeout)


def expired(version: int, floor: int) -> dict[str, Any]:
    return {"type": "ERROR", "object": status_body(
        410, f"too old resource version: {version} ({floor}); list again and watch from the list's "
             "metadata.resourceVersion", "Expired")}


@dataclasses.dataclass(frozen=True)
class WatchQuery:
    """A watch request's ``resourceVersion`` (0: list first), ``timeoutSeconds`` and ``allowWatchBookmarks``."""

    since: int
    timeout: float
    bookmarks: bool

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> WatchQuery:
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
            since = int(query.get("resourceVersion") or "0")
        except ValueError as exc:
            raise bad_request(f"resourceVersion and timeoutSeconds must be numbers: {exc}") from exc
        return cls(since, timeout, query.get("allowWatchBookmarks", "").lower() in ("true", "1"))


def watching(query: Mapping[str, str]) -> bool:
    return query.get("watch", "").lower() in ("true", "1")


async def stream(log: EventLog, initial: list[dict[str, Any]] | None, since: int, matches: Matcher,
                 timeout: float, bookmarks: bool,
                 render: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 kind: tuple[str, str] = (KIND, API_VERSION)) -> AsyncIterator[bytes]:
    """Newline-delimited JSON events: the initial ``ADDED`` ones (when listing), then changes after ``since``;
    ``render`` reshapes each event (kubectl's Table form); bookmarks name ``kind`` (kind, apiVersion)."""
    def _line(event: dict[str, Any]) -> bytes:
        return _encode(render(event) if render else event)

    deadline = time.monotonic() + timeout
    last_sent = time.monotonic()
    for obj in initial or []:
        yield _line({"type": "ADDED", "object": obj})
    cursor = since
    while True:
        changed = log.waiter()
        events = log.since(cursor)
        if events is None:
            yield _line(expired(cursor, log.floor))
            return
        for event in events:
            cursor = event.version
            if matches(event.object):
                yield _line({"type": event.type, "object": event.object})
                last_sent = time.monotonic()
        cursor = max(cursor, log.latest)
        now = time.monotonic()
        if now >= deadline:
            return
        if bookmarks and now - last_sent >= BOOKMARK_SECONDS:
            yield _line({"type": "BOOKMARK", "object": {"kind": kind[0], "apiVersion": kind[1],
                                                       "metadata": {"resourceVersion": str(cursor)}}})
            last_sent = now
        wait = deadline - now
        if bookmarks:
            wait = min(wait, max(0.05, BOOKMARK_SECONDS - (now - last_sent)))
        await _wait(changed, wait)


def _encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"
