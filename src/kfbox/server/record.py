"""Where a running server records itself (``server.json`` in its home), read without the server.

Client commands import this, not :mod:`kfbox.server.runner`, so they start without loading
FastAPI, uvicorn and SQLAlchemy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_record(home: Path) -> dict[str, Any] | None:
    """The running server's record, or None when there is none or its process is gone."""
    try:
        record = json.loads((home / "server.json").read_text())
    except (OSError, ValueError):
        return None
    return record if pid_alive(int(record.get("pid", 0))) else None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
