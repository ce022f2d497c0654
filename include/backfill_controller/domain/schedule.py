"""Which logical dates a backfill covers, computed with the target DAG's own timetable.

A window is expanded exactly as ``airflow backfill create --from-date --to-date`` does it
(``airflow/models/backfill.py``: ``dag.iter_dagrun_infos_between`` with both ends inclusive, then
only intervals whose end is in the past). Each date carries the ``run_after`` native backfill
gives its run; triggering with that ``run_after`` makes Airflow infer the same data interval.

Unscheduled targets (``schedule=None``, ``@once``, assets) have no dates of their own: they take
an explicit list, and each run's data interval is the one Airflow infers for a manual run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pendulum import DateTime

from backfill_controller.domain.request import BackfillRequest
from backfill_controller.domain.settings import MAX_DATES_PER_REQUEST


class ScheduleError(ValueError):
    """The requested dates do not fit the target's schedule; ``field`` is the conf key to blame."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, order=True)
class ScheduledDate:
    """One logical date of the target and what its run needs to match a native backfill run."""

    logical_date: DateTime
    run_after: DateTime
    data_interval_start: DateTime
    data_interval_end: DateTime

    def to_dict(self) -> dict[str, str]:
        return {
            "logical_date": self.logical_date.isoformat(),
            "run_after": self.run_after.isoformat(),
            "data_interval_start": self.data_interval_start.isoformat(),
            "data_interval_end": self.data_interval_end.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ScheduledDate:
        from backfill_controller.domain.request import parse_datetime

        return cls(**{k: parse_datetime(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def expand(
    timetable: Any, request: BackfillRequest, now: DateTime, *, limit: int | None = None
) -> list[ScheduledDate]:
    """The dates a request covers, oldest first (``run_backwards`` is applied when planning).

    A window covering more than ``limit`` dates is refused as soon as the limit is passed.
    """
    if request.dates is not None:
        return dates_from_list(timetable, request.dates, now)
    assert request.start_date is not None and request.end_date is not None
    return dates_in_window(timetable, request.start_date, request.end_date, now, limit=limit)


def dates_in_window(
    timetable: Any, start: DateTime, end: DateTime, now: DateTime, *, limit: int | None = None
) -> list[ScheduledDate]:
    """Every logical date of ``timetable`` in ``[start, end]`` whose interval has ended by ``now``.

    Raises :class:`ScheduleError` for timetables without periodic dates (schedule=None, @once,
    assets), which native backfill refuses too, and for windows of more than ``limit`` dates.
    """
    _require_periodic(timetable)
    dates: list[ScheduledDate] = []
    for date in _iter_window(timetable, start, end):
        if date.data_interval_end >= now:
            break
        if limit is not None and len(dates) >= limit:
            raise ScheduleError(
                "end_date",
                f"the window covers more than {limit} dates, the most one request may cover "
                f"(deployment setting {MAX_DATES_PER_REQUEST.option}); the {limit + 1}th is "
                f"{date.logical_date.isoformat()}: end the window before it, or split the request",
            )
        dates.append(date)
    return dates


def dates_from_list(timetable: Any, dates: Sequence[DateTime], now: DateTime) -> list[ScheduledDate]:
    """Check an explicit list against the schedule and return it as scheduled dates.

    For a periodic timetable every date must be one of its logical dates, else the error names
    the nearest valid ones. Each date is checked on its own, as a one-date window would be: a
    cron date must be on the cron, while a timedelta schedule (anchored at the window start, as
    in native backfill) accepts any date. For any other timetable every date is a manual run.
    """
    if not _is_periodic(timetable):
        return [_manual(timetable, d) for d in sorted(dates)]
    result = []
    for date in sorted(dates):
        scheduled = next(iter(_iter_window(timetable, date, date)), None)
        if scheduled is None or scheduled.logical_date != date:
            before, after = nearest_valid(timetable, date)
            near = " or ".join(d.isoformat() for d in (before, after) if d is not None)
            raise ScheduleError(
                "dates",
                f"{date.isoformat()} is not a logical date of the target's schedule"
                + (f"; nearest valid: {near}" if near else ""),
            )
        if scheduled.data_interval_end >= now:
            raise ScheduleError(
                "dates",
                f"{date.isoformat()} has not ended yet (its data interval ends "
                f"{scheduled.data_interval_end.isoformat()})",
            )
        result.append(scheduled)
    return result


def nearest_valid(timetable: Any, date: DateTime) -> tuple[DateTime | None, DateTime | None]:
    """The schedule's logical dates just before and just after ``date`` (either may be None)."""
    after = next(iter(_iter_window(timetable, date, None)), None)
    step = (after.logical_date - date) if after else timedelta(days=1)
    step = max(step, timedelta(minutes=1))
    before = None
    for _ in range(40):  # doubling look-back: bounded even for sparse schedules
        candidates = [d for d in _iter_window(timetable, date - step, date) if d.logical_date < date]
        if candidates:
            before = candidates[-1]
            break
        step *= 2
    return (before.logical_date if before else None, after.logical_date if after else None)


def _iter_window(timetable: Any, start: DateTime, end: DateTime | None) -> Iterator[ScheduledDate]:
    from airflow.timetables.base import TimeRestriction

    timetable = parsed_once(timetable)
    restriction = TimeRestriction(start, end, catchup=True)
    info = None
    while True:
        info = timetable.next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction)
        if info is None or info.data_interval is None:
            return
        yield ScheduledDate(
            logical_date=info.logical_date,
            run_after=info.run_after,
            data_interval_start=info.data_interval.start,
            data_interval_end=info.data_interval.end,
        )


def parsed_once(timetable: Any) -> Any:
    """``timetable`` itself, or for Airflow's cron timetables a copy that parses its expression once.

    Airflow's cron timetables build a new ``croniter`` for every next or previous schedule, which
    parses the expression again: two thirds of the time a long window took. The copy answers with
    one ``croniter`` reset to each new start (what a new one starts from), through Airflow's own
    rules for time zones and folds, so its dates are the timetable's
    (``tests/unit/test_schedule.py`` compares both on many schedules and zones). A timetable of any
    other kind, or one that changes how it finds its schedules, is used as it is.
    """
    import copy
    import datetime

    from airflow.timetables import _cron

    mixin = _cron.CronMixin
    if not isinstance(timetable, mixin) or any(
        getattr(type(timetable), name) is not getattr(mixin, name) for name in ("_get_next", "_get_prev")
    ):
        return timetable
    cron = _cron.croniter(timetable._expression)
    every_hour = _cron._covers_every_hour(cron)
    zone = timetable._timezone
    daily = _times_of_day(cron.expanded, zone)

    def step(current: DateTime, forward: bool) -> DateTime:
        if daily is not None:
            naive = _cron.make_naive(current, zone)
            return _cron.convert_to_utc(_cron.make_aware(_same_every_day(daily, naive, forward), zone))
        naive = _cron.make_naive(current, zone)
        cron.set_current(naive, force=True)
        scheduled = cron.get_next(datetime.datetime) if forward else cron.get_prev(datetime.datetime)
        if not every_hour:
            return _cron.convert_to_utc(_cron.make_aware(scheduled, zone))
        delta = scheduled - naive
        return _cron.convert_to_utc(current.in_timezone(zone) + delta)

    fast = copy.copy(timetable)
    fast._get_next = lambda current: step(current, True)  # type: ignore[method-assign]
    fast._get_prev = lambda current: step(current, False)  # type: ignore[method-assign]
    return fast


def _times_of_day(expanded: Sequence[Sequence[Any]], zone: Any) -> list[timedelta] | None:
    """The times of day of a cron that fires at the same times every day in a zone without
    daylight saving (minute and hour fields only, day, month and weekday ``*``), sorted; else None.

    Such a cron's next and previous schedules are found by looking the time of day up in one day's
    list: what ``croniter`` computes field by field, without it.
    """
    from pendulum.tz.timezone import FixedTimezone

    fixed = isinstance(zone, FixedTimezone) or getattr(zone, "name", None) in ("UTC", "Etc/UTC")
    if not fixed or len(expanded) != 5 or any(list(field) != ["*"] for field in expanded[2:]):
        return None
    minutes, hours = expanded[0], expanded[1]
    hours = range(24) if list(hours) == ["*"] else hours
    minutes = range(60) if list(minutes) == ["*"] else minutes
    if not all(isinstance(v, int) for v in [*minutes, *hours]):
        return None
    return sorted(timedelta(hours=h, minutes=m) for h in hours for m in minutes)


def _same_every_day(times: list[timedelta], naive: Any, forward: bool) -> Any:
    """The first of ``times`` (times of day) after ``naive``, or the last before it (``forward``
    False), as ``croniter``'s ``get_next`` and ``get_prev`` answer: never ``naive`` itself."""
    from bisect import bisect_left, bisect_right

    midnight = naive.replace(hour=0, minute=0, second=0, microsecond=0)
    since = naive - midnight
    if forward:
        i = bisect_right(times, since)
        return midnight + times[i] if i < len(times) else midnight + timedelta(days=1) + times[0]
    i = bisect_left(times, since) - 1
    return midnight + times[i] if i >= 0 else midnight - timedelta(days=1) + times[-1]


def _manual(timetable: Any, date: DateTime) -> ScheduledDate:
    interval = timetable.infer_manual_data_interval(run_after=date)
    return ScheduledDate(
        logical_date=date, run_after=date, data_interval_start=interval.start, data_interval_end=interval.end
    )


def _is_periodic(timetable: Any) -> bool:
    return bool(getattr(timetable, "periodic", False)) and not getattr(timetable, "partitioned", False)


def _require_periodic(timetable: Any) -> None:
    if not _is_periodic(timetable):
        summary = getattr(timetable, "summary", type(timetable).__name__)
        raise ScheduleError(
            "start_date",
            f"the target has no periodic schedule ({summary}), so a window has no dates; "
            "list the logical dates to run in `dates` instead",
        )


def describe(dates: Iterable[ScheduledDate]) -> list[dict[str, str]]:
    return [d.to_dict() for d in dates]
