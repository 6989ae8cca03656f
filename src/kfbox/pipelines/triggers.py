"""When a recurring run fires: KFP's cron and periodic triggers, as pure arithmetic on epoch ms.

This follows the KFP ScheduledWorkflow controller (kubeflow/pipelines
``backend/src/crd/controller/scheduledworkflow/util/{cron,periodic}_schedule.go``):

* **cron**: KFP's format is robfig/cron's, six fields with *seconds first*
  (``"0 0 9 ? * 2-6"`` = 09:00:00 Monday to Friday), or a descriptor such as ``@hourly``.
  Evaluated in UTC, as the controller in a cluster pod does. Parsing is croniter's
  (``second_at_beginning=True``); five-field (minute-first) crontab lines are refused
  because robfig would read their first field as seconds.
* **periodic**: every ``interval_second`` seconds; the first run is one interval after
  ``start_time`` when given, else one interval after the schedule was created.
* ``start_time`` / ``end_time`` bound both; after ``end_time`` nothing fires again.
* **no catch-up** (``no_catchup=True``, kfbox's default): ticks missed while the server was
  down or the schedule disabled collapse into one run for the latest of them. With catch-up
  (``no_catchup=False`` set explicitly, KFP's default) every missed tick fires, one by one.

Example::

    trigger = Trigger(cron="0 */5 * * * *")
    trigger.next_tick(last_ms=None, created_ms=t0, now_ms=t0)        # t0 rounded up to the next 5 minutes
"""

from __future__ import annotations

import dataclasses
import datetime

from kfbox.errors import InvalidInput

DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
MAX_INTERVAL_SECONDS = 100 * 366 * 86400
CRON_EXAMPLE = "'0 0 9 * * *' (09:00:00 every day) or '*/30 * * * * *' (every 30 seconds)"


@dataclasses.dataclass(frozen=True)
class Trigger:
    """One schedule's trigger: exactly one of ``cron`` and ``interval_seconds``; times in epoch ms."""

    cron: str | None = None
    interval_seconds: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_seconds is None):
            raise InvalidInput("A recurring run's trigger needs exactly one of cron_schedule.cron and "
                               "periodic_schedule.interval_second.")
        if self.cron is not None:
            check_cron(self.cron)
        if self.interval_seconds is not None and not 1 <= self.interval_seconds <= MAX_INTERVAL_SECONDS:
            raise InvalidInput(f"Found invalid period schedule interval {self.interval_seconds}. Set the interval "
                               f"to at least 1 second and at most {MAX_INTERVAL_SECONDS} (100 years).")
        if self.start_ms is not None and self.end_ms is not None and self.end_ms < self.start_ms:
            raise InvalidInput(f"The trigger's end_time ({iso(self.end_ms)}) is before its start_time "
                               f"({iso(self.start_ms)}); give an end after the start.")

    def next_tick(self, last_ms: int | None, created_ms: int, now_ms: int, catchup: bool = False) -> int | None:
        """The epoch ms of the next run to start, or ``None`` when the schedule is over.

        ``last_ms`` is the tick of the previous run (``None`` before the first), ``created_ms``
        when the schedule was made. A result ``<= now_ms`` means "due now".
        """
        base = last_ms if last_ms is not None else (self.start_ms if self.start_ms is not None else created_ms)
        if self.interval_seconds is not None:
            return self._next_periodic(base, now_ms, catchup)
        return self._next_cron(base, now_ms, catchup)

    def _next_periodic(self, base: int, now_ms: int, catchup: bool) -> int | None:
        step = self.interval_seconds * 1000 if self.interval_seconds else 1000
        result = self.start_ms if self.start_ms is not None and self.start_ms > base else base + step
        if self.end_ms is not None and self.end_ms < result:
            return None
        if not catchup and now_ms >= result + step:
            # KFP's GetNextScheduledEpochNoCatchup: reschedule to min(now, end)
            return min(now_ms, self.end_ms) if self.end_ms is not None else now_ms
        return result

    def _next_cron(self, base: int, now_ms: int, catchup: bool) -> int | None:
        start = max(base, self.start_ms) if self.start_ms is not None else base
        result = _cron_after(str(self.cron), start)
        if result is None or (self.end_ms is not None and self.end_ms < result):
            return None
        if catchup:
            return result
        # skip to the last tick that is already due (and not past the end)
        while True:
            following = _cron_after(str(self.cron), result)
            if following is None or following > now_ms or (self.end_ms is not None and following > self.end_ms):
                return result
            result = following


def check_cron(expression: str) -> None:
    """Refuse what robfig/cron (KFP's parser) would refuse or read differently, with an example."""
    from croniter import croniter

    text = expression.strip()
    if text.startswith("@"):
        if text.lower() in DESCRIPTORS:
            return
        hint = (" '@every DURATION' is not supported here; use a periodic trigger (interval_second) instead."
                if text.lower().startswith("@every") else "")
        raise InvalidInput(f"Schedule cron {expression!r} is not a supported descriptor; use one of "
                           f"{', '.join(DESCRIPTORS)} or six fields such as {CRON_EXAMPLE}.{hint}")
    fields = text.split()
    if len(fields) != 6:
        raise InvalidInput(f"Schedule cron {expression!r} has {len(fields)} fields; KFP's cron has six, seconds "
                           f"first: 'SECOND MINUTE HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK', e.g. {CRON_EXAMPLE}.")
    if not croniter.is_valid(text, second_at_beginning=True):
        raise InvalidInput(f"Schedule cron {expression!r} is not a valid cron expression; KFP's cron has six "
                           f"fields, seconds first, e.g. {CRON_EXAMPLE}.")
    if _cron_after(text, int(datetime.datetime.now(datetime.UTC).timestamp()) * 1000) is None:
        raise InvalidInput(f"Schedule cron {expression!r} never fires (no such date); check the day and month "
                           "fields.")


def _cron_after(expression: str, after_ms: int) -> int | None:
    """The first tick strictly after ``after_ms`` (robfig's ``Schedule.Next``), in UTC; None if none comes."""
    from croniter import CroniterBadDateError, croniter

    text = expression.strip()
    if text.startswith("@"):
        text = {"@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
                "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *",
                "@hourly": "0 0 * * * *"}[text.lower()]
    # robfig truncates to the second and looks from the next one
    start = datetime.datetime.fromtimestamp(after_ms // 1000, tz=datetime.UTC)
    try:
        nxt = croniter(text, start, second_at_beginning=True).get_next(datetime.datetime)
    except CroniterBadDateError:  # e.g. "0 0 0 30 2 *": February 30th never comes
        return None
    return int(nxt.timestamp()) * 1000


def iso(ms: int) -> str:
    stamp = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")
