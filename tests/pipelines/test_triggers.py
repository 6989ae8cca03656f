"""Trigger arithmetic against KFP's ScheduledWorkflow controller rules, with fixed clocks (no waiting)."""

from __future__ import annotations

import datetime

import pytest

from kfbox.errors import InvalidInput
from kfbox.pipelines.triggers import Trigger

S = 1000


def ms(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


T0 = ms("2026-01-05T08:00:03Z")  # a Monday


def test_periodic_first_run_is_one_interval_after_creation() -> None:
    trigger = Trigger(interval_seconds=60)
    assert trigger.next_tick(None, T0, T0) == T0 + 60 * S
    assert trigger.next_tick(T0 + 60 * S, T0, T0 + 61 * S) == T0 + 120 * S


def test_periodic_counts_from_start_time_when_given() -> None:
    start = T0 + 3600 * S  # KFP: the first run is one interval after start_time, not at it
    assert Trigger(interval_seconds=60, start_ms=start).next_tick(None, T0, T0) == start + 60 * S


def test_periodic_without_catchup_collapses_missed_ticks_into_one_run_now() -> None:
    trigger = Trigger(interval_seconds=60)
    now = T0 + 60 * S + 3600 * S  # the server was down for an hour after the first run
    assert trigger.next_tick(T0 + 60 * S, T0, now) == now
    assert trigger.next_tick(now, T0, now) == now + 60 * S  # and the rhythm restarts from there


def test_periodic_with_catchup_fires_every_missed_tick_in_order() -> None:
    trigger = Trigger(interval_seconds=60)
    now = T0 + 3600 * S
    assert trigger.next_tick(T0 + 60 * S, T0, now, catchup=True) == T0 + 120 * S


def test_periodic_end_time_stops_the_schedule() -> None:
    trigger = Trigger(interval_seconds=60, end_ms=T0 + 90 * S)
    assert trigger.next_tick(None, T0, T0) == T0 + 60 * S
    assert trigger.next_tick(T0 + 60 * S, T0, T0 + 61 * S) is None
    # down past the end without catch-up: one last run at the end, as KFP does, then nothing
    assert Trigger(interval_seconds=60, end_ms=T0 + 300 * S).next_tick(T0 + 60 * S, T0, T0 + 900 * S) == T0 + 300 * S


def test_cron_has_seconds_first_like_kfp() -> None:
    trigger = Trigger(cron="*/10 * * * * *")
    assert trigger.next_tick(None, T0, T0) == ms("2026-01-05T08:00:10Z")
    weekdays = Trigger(cron="0 0 9 ? * 1-5")
    friday = ms("2026-01-09T09:00:00Z")
    assert weekdays.next_tick(friday, T0, friday) == ms("2026-01-12T09:00:00Z")  # skips the weekend
    assert Trigger(cron="@hourly").next_tick(None, T0, T0) == ms("2026-01-05T09:00:00Z")


def test_cron_without_catchup_runs_only_the_latest_missed_tick() -> None:
    daily = Trigger(cron="0 0 9 * * *")
    monday = ms("2026-01-05T09:00:00Z")
    thursday_late = ms("2026-01-08T10:30:00Z")
    assert daily.next_tick(monday, T0, thursday_late) == ms("2026-01-08T09:00:00Z")
    assert daily.next_tick(monday, T0, thursday_late, catchup=True) == ms("2026-01-06T09:00:00Z")


def test_cron_start_and_end_bound_the_ticks() -> None:
    start, end = ms("2026-02-01T00:00:00Z"), ms("2026-02-02T12:00:00Z")
    daily = Trigger(cron="0 0 9 * * *", start_ms=start, end_ms=end)
    assert daily.next_tick(None, T0, T0) == ms("2026-02-01T09:00:00Z")
    assert daily.next_tick(ms("2026-02-02T09:00:00Z"), T0, ms("2026-02-02T09:00:01Z")) is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cron": "*/5 * * * *"}, "has 5 fields; KFP's cron has six, seconds first"),
    ({"cron": "0 0 0 * * * 2026"}, "has 7 fields"),
    ({"cron": "0 0 25 * * *"}, "is not a valid cron expression"),
    ({"cron": "@every 1h"}, "use a periodic trigger (interval_second)"),
    ({"interval_seconds": 0}, "at least 1 second"),
    ({"interval_seconds": 10**20}, "at most 3162240000"),
    ({"cron": "0 0 0 30 2 *"}, "never fires"),
    ({}, "exactly one of cron_schedule.cron and periodic_schedule.interval_second"),
    ({"cron": "@daily", "interval_seconds": 5}, "exactly one of"),
    ({"interval_seconds": 5, "start_ms": T0, "end_ms": T0 - 1}, "is before its start_time"),
])
def test_bad_triggers_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        Trigger(**kwargs)  # type: ignore[arg-type]
    assert message in exc.value.message
