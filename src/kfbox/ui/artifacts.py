"""Artifacts browser (what the MinIO console gave): by run and task, with preview and download.

Files are served only from inside the artifacts root (see :class:`ArtifactFiles`); HTML
artifacts are served with ``Content-Security-Policy: sandbox`` and shown in a sandboxed frame,
so their scripts cannot reach the dashboard.
"""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import func, select

from kfbox.errors import InvalidInput
from kfbox.pipelines.tables import Artifact, Run, Task
from kfbox.server.platform import Platform, required
from kfbox.ui.artifact_files import ArtifactFiles, preview
from kfbox.ui.render import Pages

RAW_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"


def build(platform: Platform, pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    files = ArtifactFiles(platform.settings.artifacts_dir)

    def artifact(artifact_id: str) -> Artifact:
        return required(platform.services.pipelines, "pipelines").runs.artifact(artifact_id)

    @router.get("/artifacts")
    @router.get("/artifacts.json")
    @pages.page("artifacts.html", "Artifacts")
    def browse(request: Request, run: str = "", page: int = Query(default=0, ge=0),
               page_size: int = Query(default=50, ge=1, le=500)) -> dict[str, Any]:
        if run:
            with platform.db.read() as s:
                row = required(platform.services.pipelines, "pipelines").runs.get(run, s)
                tasks = {t.id: t.path for t in s.scalars(select(Task).where(Task.run_id == run))}
                arts = list(s.scalars(select(Artifact).where(Artifact.run_id == run).order_by(Artifact.id)))
            groups: dict[str, list[dict[str, Any]]] = {}
            for a in arts:
                groups.setdefault(tasks.get(a.task_id, a.task_id), []).append(
                    {"id": a.id, "key": a.key, "type": a.schema_title, "uri": a.uri, "name": a.name})
            return {"run": {"run_id": row.id, "display_name": row.display_name}, "tasks": sorted(groups.items()),
                    "runs": [], "next_url": ""}
        with platform.db.read() as s:
            # newest runs first (the created index), then their artifact counts (the run_id index):
            # the cost of one page, however large the store
            rows = s.execute(select(Run.id, Run.display_name, Run.created_ms).order_by(Run.created_ms.desc())
                             .offset(page * page_size).limit(page_size + 1)).all()
            counts = dict(s.execute(select(Artifact.run_id, func.count()).where(
                Artifact.run_id.in_([r[0] for r in rows])).group_by(Artifact.run_id)).all())
        more = len(rows) > page_size
        runs = [{"run_id": r[0], "display_name": r[1], "created_ms": r[2], "artifacts": counts.get(r[0], 0)}
                for r in rows[:page_size]]
        return {"run": None, "tasks": [], "runs": runs, "next_url": f"/artifacts?page={page + 1}" if more else ""}

    @router.get("/artifacts/{artifact_id}")
    @router.get("/artifacts/{artifact_id}.json")
    @pages.page("artifact_page.html", lambda d: d["a"]["key"])
    def artifact_page(request: Request, artifact_id: str) -> dict[str, Any]:
        row = artifact(artifact_id)
        return {"a": preview(files, row), "run_id": row.run_id}

    @router.get("/artifacts/{artifact_id}/download")
    def download(artifact_id: str, file: str = "") -> Response:
        row = artifact(artifact_id)
        path = files.path(row.uri, file)
        if path.is_dir():
            raise InvalidInput(f"{file or row.uri!r} is a folder; download its files one by one from the "
                               f"artifact page /artifacts/{artifact_id}.")
        return FileResponse(path, filename=path.name, media_type="application/octet-stream",
                            headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})

    @router.get("/artifacts/{artifact_id}/raw")
    def raw(artifact_id: str) -> Response:
        """An HTML (or text) artifact for the sandboxed frame: no script runs, nothing leaves."""
        row = artifact(artifact_id)
        path = files.path(row.uri)
        if path.is_dir():
            raise InvalidInput(f"Artifact {artifact_id} is a folder; pick one of its files.")
        kind = "text/html" if row.schema_title == "system.HTML" else mimetypes.guess_type(path.name)[0] or "text/plain"
        if kind not in ("text/html", "text/plain", "text/csv"):
            kind = "text/plain"
        return FileResponse(path, media_type=kind, headers={"Content-Security-Policy": RAW_CSP,
                                                            "X-Content-Type-Options": "nosniff"})

    return router
