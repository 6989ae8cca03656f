"""A task's retry backoff: KFP's ``retryPolicy`` as Argo's ``retryStrategy.backoff`` applies it."""

from __future__ import annotations

from typing import Any

from kfbox.durations import parse_duration
from kfbox.errors import InvalidInput


def backoff(policy: dict[str, Any], attempt: int) -> float:
    """Seconds before retry ``attempt + 1``: duration x factor^attempt, capped (Argo's retryStrategy)."""
    base = _seconds(policy.get("backoffDuration"), 0.0)
    factor = float(policy.get("backoffFactor") or 2.0)
    cap = _seconds(policy.get("backoffMaxDuration"), 3600.0)
    return float(min(cap, base * factor ** attempt))


def _seconds(value: Any, default: float) -> float:
    """The duration, or ``default`` when the policy has none (or one that is not a duration, as before)."""
    if not value:
        return default
    try:
        return parse_duration(value, "retryPolicy backoff")
    except InvalidInput:
        return default
