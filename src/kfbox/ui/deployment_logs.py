"""A deployment's replica logs: every replica of every revision (files stay after a replica
stops, so a crash is readable after the fact), the whole file as text, and a live follow as
Server-Sent Events.

The stream opens with a bounded tail of the file (the last ``TAIL_BYTES``, from a line start),
then sends what is appended, each event's ``id`` the byte offset it ends at: a reconnecting
``EventSource`` sends it back as ``Last-Event-ID`` and the stream resumes there. A stream ends
after ``STREAM_SECONDS`` (the browser reconnects) or when the client goes away. Files are picked
by name from the deployment's own list, never by path.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from kfbox.errors import NotFound
from kfbox.server.platform import Platform
from kfbox.ui.render import Pages

TAIL_BYTES = 64 * 1024
RAW_BYTES = 1024 * 1024
POLL_S = 0.5
STREAM_SECONDS = 300
PING_S = 15


def log_files(manager: Any, namespace: str, name: str) -> list[Path]:
    """Every replica log of every revision, oldest revision first, newest file last within one."""
    deployment = manager.deployment(namespace, name)
    files: list[Path] = []
    for revision in sorted(deployment.record.revisions):
        files.extend(manager.log_paths(namespace, name, revision))
    return files


def describe_files(files: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in files:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        rows.append({"name": path.name, "bytes": stat.st_size, "modified_ms": int(stat.st_mtime * 1000)})
    return rows


def read_tail(path: Path, limit: int) -> tuple[str, int]:
    """(the last ``limit`` bytes, from the first line start in them; the file's size)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = max(0, size - limit)
            f.seek(start)
            data = f.read(size - start)
    except FileNotFoundError:
        return "", 0
    if start and b"\n" in data:
        data = data[data.index(b"\n") + 1:]
    return data.decode(errors="replace"), size


def read_from(path: Path, offset: int, limit: int) -> tuple[str, int]:
    """(bytes appended since ``offset``, at most ``limit``; the new offset). A shorter file starts over."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:
                offset = 0
            f.seek(offset)
            data = f.read(min(limit, size - offset))
    except FileNotFoundError:
        return "", offset
    return data.decode(errors="replace"), offset + len(data)


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def pick(namespace: str, name: str, file: str) -> Path:
        manager = platform.services.serving
        if manager is None:
            raise NotFound("Serving is not part of this server.")
        files = log_files(manager, namespace, name)
        if not files:
            raise NotFound(f"Deployment {namespace}/{name} has no replica log yet; it appears when a replica starts.")
        if not file:
            return files[-1]
        found = next((p for p in files if p.name == file), None)
        if found is None:
            raise NotFound(f"Deployment {namespace}/{name} has no log {file!r}; "
                           f"its logs are: {', '.join(p.name for p in files)}.")
        return found

    @router.get("/deployments/{namespace}/{name}/logs/raw", response_class=PlainTextResponse)
    def raw(namespace: str, name: str, file: str = "") -> Response:
        """One replica's log as text (its last MiB)."""
        text, size = read_tail(pick(namespace, name, file), RAW_BYTES)
        return PlainTextResponse(text, headers={"X-Log-Size": str(size), "Cache-Control": "no-store",
                                                "X-Content-Type-Options": "nosniff"})

    @router.get("/deployments/{namespace}/{name}/logs/stream")
    async def stream(request: Request, namespace: str, name: str, file: str = "",
                     offset: int = Query(default=-1, ge=-1)) -> Response:
        """Server-Sent Events: ``{"text", "offset"}`` per event, the tail first (unless resuming)."""
        path = pick(namespace, name, file)
        resume = request.headers.get("last-event-id", "")
        start = int(resume) if resume.isdigit() else offset

        async def events() -> AsyncIterator[str]:
            if start < 0:
                text, at = read_tail(path, TAIL_BYTES)
                yield _event(text, at, tail=True)
            else:
                at = start
            until = time.monotonic() + STREAM_SECONDS
            quiet_since = time.monotonic()
            while time.monotonic() < until and not await request.is_disconnected():
                text, moved = read_from(path, at, TAIL_BYTES)
                if moved != at or text:
                    at = moved
                    quiet_since = time.monotonic()
                    yield _event(text, at)
                    continue
                if time.monotonic() - quiet_since > PING_S:
                    quiet_since = time.monotonic()
                    yield ": still here\n\n"
                await asyncio.sleep(POLL_S)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    return router


def _event(text: str, offset: int, tail: bool = False) -> str:
    body = json.dumps({"text": text, "offset": offset, "tail": tail})
    return f"id: {offset}\ndata: {body}\n\n"
