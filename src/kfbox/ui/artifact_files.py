"""Artifact files on this machine, and what the dashboard shows of each kind.

Every path is resolved (symlinks included) and must stay inside the artifacts root
(``KFBOX_HOME/artifacts``); anything else is refused, whatever the stored URI says.

Example::

    store = ArtifactFiles(settings.artifacts_dir)
    preview(store, artifact_row)   # {"view": "metrics", "rows": [...], ...}
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfbox.errors import InvalidInput, NotFound
from kfbox.pipelines.tables import Artifact
from kfbox.storage.uris import safe_join
from kfbox.ui.csrf import Forbidden

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

MAX_PREVIEW_BYTES = 512 * 1024
CSV_ROWS = 20
TEXT_SUFFIXES = (".txt", ".log", ".json", ".yaml", ".yml", ".py", ".md")


@functools.cache
def _markdown() -> MarkdownIt:
    """CommonMark with raw HTML off: a Markdown artifact cannot carry script or markup of its own.
    Built on first use: markdown_it is not imported at server start."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


class ArtifactFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, uri: str, inner: str = "") -> Path:
        """The local file or folder of ``uri`` (+ ``inner``, a path inside a folder artifact)."""
        raw = uri[len("file://"):] if uri.startswith("file://") else uri
        if not raw or "://" in raw:
            raise NotFound(f"Artifact {uri!r} is not stored on this machine; open it where it lives.")
        base = Path(raw)
        if inner:
            base = safe_join(base, inner)
        root = self.root.resolve()
        resolved = base.resolve()
        if not resolved.is_relative_to(root):
            raise Forbidden(f"Artifact path {str(base)!r} is outside the artifacts root {root}; it is not served.")
        if not resolved.exists():
            raise NotFound(f"Artifact file {str(base)!r} does not exist (any more).")
        return resolved

    def listing(self, uri: str, inner: str = "") -> list[dict[str, Any]]:
        folder = self.path(uri, inner)
        if not folder.is_dir():
            raise InvalidInput(f"{inner or uri!r} is a file, not a folder.")
        return [{"name": p.name, "rel": str(Path(inner) / p.name) if inner else p.name, "dir": p.is_dir(),
                 "size": p.stat().st_size if p.is_file() else None} for p in sorted(folder.iterdir())][:1000]

    def head(self, path: Path) -> str:
        with open(path, "rb") as f:
            return f.read(MAX_PREVIEW_BYTES).decode(errors="replace")


def preview(files: ArtifactFiles, row: Artifact) -> dict[str, Any]:
    """What to draw for one artifact: ``view`` names the template part, the rest is its data."""
    meta = row.artifact_metadata or {}
    out: dict[str, Any] = {"id": row.id, "key": row.key, "name": row.name, "type": row.schema_title,
                           "uri": row.uri, "task_id": row.task_id, "metadata": meta, "view": "none",
                           "download": f"/artifacts/{row.id}/download"}
    scalars = {k: v for k, v in meta.items() if isinstance(v, int | float | str | bool) and k != "display_name"}
    if row.schema_title == "system.Metrics":
        out.update(view="metrics", rows=sorted(scalars.items()))
        return out
    if row.schema_title == "system.ClassificationMetrics":
        out.update(view="classification", confusion=_confusion(meta.get("confusionMatrix")),
                   roc=_roc(meta.get("confidenceMetrics")))
        return out
    try:
        path = files.path(row.uri)
    except (NotFound, Forbidden, InvalidInput) as exc:
        out.update(view="missing", reason=exc.message)
        return out
    if path.is_dir():
        out.update(view="folder", entries=files.listing(row.uri))
        return out
    out["size"] = path.stat().st_size
    if row.schema_title == "system.Markdown" or path.suffix == ".md":
        out.update(view="markdown", html=_markdown().render(files.head(path)))
    elif row.schema_title == "system.HTML" or path.suffix in (".html", ".htm"):
        out.update(view="html", src=f"/artifacts/{row.id}/raw")
    elif path.suffix == ".csv" or _looks_like_csv(files, path):
        out.update(view="csv", **_csv(files.head(path)))
    elif path.suffix in TEXT_SUFFIXES or not path.suffix:
        text = files.head(path)
        if "\x00" not in text[:1024]:
            out.update(view="text", text=text[:20_000])
    return out


def _looks_like_csv(files: ArtifactFiles, path: Path) -> bool:
    if path.suffix or path.stat().st_size == 0:
        return False
    first = files.head(path).split("\n", 1)[0]
    return first.count(",") >= 1 and "\x00" not in first


def _csv(text: str) -> dict[str, Any]:
    lines = text.splitlines()
    rows = list(csv.reader(io.StringIO("\n".join(lines[:CSV_ROWS + 1]))))
    return {"header": rows[0] if rows else [], "rows": rows[1:], "total_lines": len(lines) - 1,
            "truncated": len(lines) > CSV_ROWS + 1}


def _confusion(matrix: Any) -> dict[str, Any] | None:
    if not isinstance(matrix, dict):
        return None
    labels = [str(s.get("displayName", i)) for i, s in enumerate(matrix.get("annotationSpecs") or [])]
    rows = [list(r.get("row") or []) for r in matrix.get("rows") or [] if isinstance(r, dict)]
    return {"labels": labels, "rows": rows} if rows else None


def _roc(points: Any) -> dict[str, Any] | None:
    """ROC curve as an SVG polyline in a 200x200 box (x = false positive rate, y = recall)."""
    if not isinstance(points, list) or not points:
        return None
    pairs = sorted((float(p.get("falsePositiveRate", 0)), float(p.get("recall", 0)))
                   for p in points if isinstance(p, dict))
    area = sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in itertools.pairwise(pairs))
    line = " ".join(f"{30 + x * 200:.1f},{210 - y * 200:.1f}" for x, y in pairs)
    return {"points": line, "auc": round(area, 4), "count": len(pairs)}
