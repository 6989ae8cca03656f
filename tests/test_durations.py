"""One Go-style duration parser for the window annotation, loadtest -z and retry backoff."""

from __future__ import annotations

import pytest

from kfbox.durations import parse_duration
from kfbox.errors import InvalidInput
from kfbox.pipelines.orchestrator.backoff import backoff


@pytest.mark.parametrize(("text", "seconds"), [
    ("60s", 60.0), ("500ms", 0.5), ("2m", 120.0), ("1m30s", 90.0), ("1h", 3600.0), ("1.5s", 1.5),
    ("10", 10.0), ("0.25", 0.25), (" 30s ", 30.0), (0, 0.0),
])
def test_go_durations_and_bare_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text, "Window") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "", "1x", "-1s", "-5", "nan", "inf", "1e400", "s"])
def test_what_is_not_a_duration_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^Window .* duration"):
        parse_duration(text, "Window")


def test_retry_backoff_grows_by_the_factor_up_to_the_cap() -> None:
    policy = {"backoffDuration": "1s", "backoffFactor": 2, "backoffMaxDuration": "3s"}
    assert [backoff(policy, attempt) for attempt in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert backoff({"backoffDuration": "500ms"}, 1) == 1.0  # factor 2 by default
    assert backoff({}, 3) == 0.0
