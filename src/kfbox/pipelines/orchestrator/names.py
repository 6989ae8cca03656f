"""Names from a pipeline spec that become file names: made safe, and kept inside their root.

A compiled pipeline is user input: a component key ``comp-../../x`` or a task named ``..``
must never reach outside the run's folders (issue 8, item 3).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def segment(name: str) -> str:
    """One path segment: unsafe characters become ``_``; never empty, ``.``, ``..`` or hidden."""
    cleaned = _UNSAFE.sub("_", name)[:120]
    if not cleaned or cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned


def inside(root: Path, *names: str) -> Path:
    """``root/seg(n1)/seg(n2)...``, checked to resolve inside ``root``."""
    path = root.joinpath(*(segment(n) for n in names))
    resolved_root = _resolved(root)
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ValueError(f"path {str(path)!r} would leave {str(root)!r}")
    return path


@functools.lru_cache(maxsize=32)
def _resolved(root: Path) -> Path:
    """A run's roots do not move while it runs: resolved once, not for every task."""
    return root.resolve()
