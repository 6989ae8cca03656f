"""The watch event log in process: bounded history (an evicted version is 410 Gone), replay, bookmarks."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from kfbox.serving import watch
from kfbox.serving.watch import EventLog, stream


def obj(name: str, version: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": str(version)}}


async def collect(log: EventLog, since: int, timeout: float, bookmarks: bool = False) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in stream(log, None, since, lambda _o: True, timeout, bookmarks)]


def test_history_is_bounded_and_an_evicted_version_is_gone() -> None:
    async def run() -> None:
        log = EventLog(floor=10, size=3)
        for version in range(11, 16):
            log.record("MODIFIED", obj("a", version), version)
        assert [e.version for e in log.events] == [13, 14, 15] and log.floor == 12
        replay = await collect(log, 12, 0.05)
        assert [e["object"]["metadata"]["resourceVersion"] for e in replay] == ["13", "14", "15"]
        gone = await collect(log, 11, 0.05)
        assert gone[0]["type"] == "ERROR" and gone[0]["object"]["code"] == 410
        assert (await collect(log, 9, 0.05))[0]["object"]["reason"] == "Expired"  # from before the start too

    asyncio.run(run())


def test_a_waiting_watch_gets_new_events_and_bookmarks(monkeypatch: Any) -> None:
    monkeypatch.setattr(watch, "BOOKMARK_SECONDS", 0.1)

    async def run() -> None:
        log = EventLog(floor=0)
        task = asyncio.create_task(collect(log, 0, 0.5, bookmarks=True))
        await asyncio.sleep(0.05)
        log.record("ADDED", obj("b", 1), 1)
        events = await task
        assert events[0] == {"type": "ADDED", "object": obj("b", 1)}
        bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
        assert bookmarks and bookmarks[-1]["object"]["metadata"]["resourceVersion"] == "1"

    asyncio.run(run())
