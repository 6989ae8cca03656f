"""Wall-clock time as every API stores and returns it: whole milliseconds since the epoch."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in epoch milliseconds (KFP's and the Model Registry's ``...TimeSinceEpoch`` unit)."""
    return int(time.time() * 1000)
