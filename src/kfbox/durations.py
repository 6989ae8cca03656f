"""Durations as Kubernetes and KFP write them: Go's ``time.ParseDuration`` syntax, parsed by ``durationpy``.

``"60s"``, ``"500ms"``, ``"1m30s"``, ``"2h"``; a bare number is seconds (``"10"``, ``"0.5"``).
One parser for every place that reads one: the autoscaler's window annotation, ``kfbox
loadtest -z``, a pipeline task's retry backoff.

Example::

    parse_duration("1m30s", "loadtest -z")   # 90.0
"""

from __future__ import annotations

import math
from typing import Any

import durationpy

from kfbox.errors import InvalidInput


def parse_duration(value: Any, what: str) -> float:
    """Seconds (finite, not negative); a value that is not a duration is :class:`InvalidInput` naming ``what``."""
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = durationpy.from_str(text).total_seconds()
        except (durationpy.DurationError, ValueError, OverflowError) as exc:
            raise InvalidInput(f"{what} {value!r} is not understood as a duration; "
                               "write e.g. '60s', '500ms' or '1m30s'.") from exc
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(f"{what} {value!r} is not a duration of zero or more seconds; write e.g. '60s'.")
    return seconds
