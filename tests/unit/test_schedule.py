"""Specification of date expansion, against Airflow's own timetables (no Airflow services needed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
import pytest
from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable
from airflow.timetables.simple import NullTimetable, OnceTimetable
from airflow.timetables.trigger import CronTriggerTimetable

from backfill_controller.domain.request import BackfillRequest, parse_datetime
from backfill_controller.domain.schedule import (
    ScheduledDate,
    ScheduleError,
    _iter_window,
    dates_from_list,
    dates_in_window,
    expand,
    nearest_valid,
    parsed_once,
)

LATER = pendulum.datetime(2030, 1, 1, tz="UTC")
"""A ``now`` after every interval used here, unless a test is about intervals not yet ended."""

DAILY = CronTriggerTimetable("@daily", timezone="UTC")  # what schedule="@daily" means in Airflow 3
DAILY_INTERVAL = CronDataIntervalTimetable("@daily", timezone="UTC")
NEW_YORK_6AM = CronDataIntervalTimetable("0 6 * * *", timezone="America/New_York")
BERLIN_0130 = CronTriggerTimetable("30 1 * * *", timezone="Europe/Berlin")
EVERY_12_HOURS = DeltaDataIntervalTimetable(timedelta(hours=12))


def dt(text: str) -> pendulum.DateTime:
    return parse_datetime(text)


def dts(*texts: str) -> list[pendulum.DateTime]:
    return [dt(t) for t in texts]


def logical_dates(dates: list[ScheduledDate]) -> list[pendulum.DateTime]:
    return [d.logical_date for d in dates]


# --- windows ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timetable", "start", "end", "expected"),
    [
        (
            DAILY,
            "2023-12-30",
            "2024-01-02",
            dts("2023-12-30", "2023-12-31", "2024-01-01", "2024-01-02"),
        ),
        (DAILY, "2024-02-28", "2024-03-01", dts("2024-02-28", "2024-02-29", "2024-03-01")),
        (DAILY, "2023-02-28", "2023-03-01", dts("2023-02-28", "2023-03-01")),
        (
            NEW_YORK_6AM,
            "2024-03-09",
            "2024-03-11T23:59",
            dts("2024-03-09T11:00Z", "2024-03-10T10:00Z", "2024-03-11T10:00Z"),
        ),
        (
            NEW_YORK_6AM,
            "2024-11-02",
            "2024-11-04T23:59",
            dts("2024-11-02T10:00Z", "2024-11-03T11:00Z", "2024-11-04T11:00Z"),
        ),
        (
            BERLIN_0130,
            "2024-03-30T00:00+01:00",
            "2024-04-01T23:59+02:00",
            dts("2024-03-30T00:30Z", "2024-03-31T00:30Z", "2024-03-31T23:30Z"),
        ),
        (
            BERLIN_0130,
            "2024-10-26T00:00+02:00",
            "2024-10-28T23:59+01:00",
            dts("2024-10-25T23:30Z", "2024-10-26T23:30Z", "2024-10-28T00:30Z"),
        ),
        (
            EVERY_12_HOURS,
            "2024-01-01",
            "2024-01-02",
            dts("2024-01-01T00:00Z", "2024-01-01T12:00Z", "2024-01-02T00:00Z"),
        ),
    ],
    ids=[
        "daily over a year boundary",
        "leap day",
        "no leap day in 2023",
        "DST spring forward in New York (UTC 11:00 -> 10:00)",
        "DST fall back in New York (UTC 10:00 -> 11:00)",
        "DST spring forward in Berlin (UTC 00:30 -> 23:30 the day before)",
        "DST fall back in Berlin (UTC 23:30 the day before -> 00:30)",
        "timedelta of 12 hours",
    ],
)
def test_window_expands_to_the_timetables_logical_dates(
    timetable: Any, start: str, end: str, expected: list[pendulum.DateTime]
) -> None:
    assert logical_dates(dates_in_window(timetable, dt(start), dt(end), LATER)) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2024-01-01T00:00", "2024-01-03T00:00", dts("2024-01-01", "2024-01-02", "2024-01-03")),
        ("2024-01-01T00:00:01", "2024-01-03T00:00", dts("2024-01-02", "2024-01-03")),
        ("2024-01-01T00:00", "2024-01-02T23:59:59", dts("2024-01-01", "2024-01-02")),
        ("2024-01-02", "2024-01-02", dts("2024-01-02")),
        ("2024-01-01T01:00", "2024-01-01T23:00", []),
    ],
    ids=[
        "both ends on a logical date are included",
        "start one second after a date excludes it",
        "end one second before a date excludes it",
        "start equals end on a date",
        "window between two dates is empty",
    ],
)
def test_window_boundaries_are_inclusive(start: str, end: str, expected: list[pendulum.DateTime]) -> None:
    assert logical_dates(dates_in_window(DAILY, dt(start), dt(end), LATER)) == expected


def test_data_interval_timetable_runs_after_the_interval_ends() -> None:
    """Spring forward: the interval over the short night is 23 hours long; run_after is its end."""
    dates = dates_in_window(NEW_YORK_6AM, dt("2024-03-09"), dt("2024-03-10T23:59"), LATER)

    assert dates == [
        ScheduledDate(
            logical_date=dt("2024-03-09T11:00Z"),
            run_after=dt("2024-03-10T10:00Z"),
            data_interval_start=dt("2024-03-09T11:00Z"),
            data_interval_end=dt("2024-03-10T10:00Z"),
        ),
        ScheduledDate(
            logical_date=dt("2024-03-10T10:00Z"),
            run_after=dt("2024-03-11T10:00Z"),
            data_interval_start=dt("2024-03-10T10:00Z"),
            data_interval_end=dt("2024-03-11T10:00Z"),
        ),
    ]


def test_data_interval_over_the_long_night_is_25_hours() -> None:
    (date,) = dates_in_window(NEW_YORK_6AM, dt("2024-11-02"), dt("2024-11-02T23:59"), LATER)

    assert date.data_interval_end - date.data_interval_start == timedelta(hours=25)
    assert date.run_after == date.data_interval_end == dt("2024-11-03T11:00Z")


def test_trigger_timetable_runs_at_its_logical_date_with_an_empty_interval() -> None:
    dates = dates_in_window(BERLIN_0130, dt("2024-03-30"), dt("2024-04-01T12:00"), LATER)

    assert dates
    for date in dates:
        assert date.run_after == date.logical_date
        assert date.data_interval_start == date.data_interval_end == date.logical_date


def test_timedelta_timetable_runs_one_delta_after_the_logical_date() -> None:
    dates = dates_in_window(EVERY_12_HOURS, dt("2024-01-01"), dt("2024-01-02"), LATER)

    assert dates
    for date in dates:
        assert date.data_interval_start == date.logical_date
        assert date.run_after == date.data_interval_end == date.logical_date + timedelta(hours=12)


@pytest.mark.parametrize(
    ("timetable", "now", "expected"),
    [
        (DAILY_INTERVAL, "2024-01-03T12:00", dts("2024-01-01", "2024-01-02")),
        (DAILY_INTERVAL, "2024-01-03T00:00", dts("2024-01-01")),
        (DAILY, "2024-01-03T12:00", dts("2024-01-01", "2024-01-02", "2024-01-03")),
        (DAILY, "2024-01-03T00:00", dts("2024-01-01", "2024-01-02")),
        (DAILY, "2023-12-31", []),
    ],
    ids=[
        "interval still running is excluded",
        "interval ending exactly now is excluded",
        "trigger date already passed is included",
        "trigger date exactly now is excluded",
        "whole window in the future",
    ],
)
def test_dates_whose_interval_has_not_ended_are_left_out(
    timetable: Any, now: str, expected: list[pendulum.DateTime]
) -> None:
    dates = dates_in_window(timetable, dt("2024-01-01"), dt("2024-01-05"), dt(now))

    assert logical_dates(dates) == expected


@pytest.mark.parametrize("timetable", [NullTimetable(), OnceTimetable()], ids=["schedule=None", "@once"])
def test_window_on_an_unscheduled_target_is_refused_and_points_to_dates(timetable: Any) -> None:
    with pytest.raises(ScheduleError) as excinfo:
        dates_in_window(timetable, dt("2024-01-01"), dt("2024-01-05"), LATER)

    assert excinfo.value.field == "start_date"
    assert "`dates`" in str(excinfo.value)


# --- explicit dates --------------------------------------------------------------------------


@pytest.mark.parametrize("timetable", [NullTimetable(), OnceTimetable()], ids=["schedule=None", "@once"])
def test_explicit_dates_of_an_unscheduled_target_are_taken_as_given(timetable: Any) -> None:
    dates = dates_from_list(timetable, dts("2024-01-02T05:17:00", "2024-01-01"), LATER)

    assert dates == [
        ScheduledDate(*[dt("2024-01-01")] * 4),
        ScheduledDate(*[dt("2024-01-02T05:17:00")] * 4),
    ]


@pytest.mark.parametrize(
    ("timetable", "wanted"),
    [
        (DAILY, dts("2024-01-03", "2024-01-01")),
        (NEW_YORK_6AM, dts("2024-03-09T11:00Z", "2024-03-11T10:00Z")),
        (BERLIN_0130, dts("2024-10-27T01:30+02:00", "2024-10-28T01:30+01:00")),
    ],
    ids=["daily, given out of order", "New York across DST", "Berlin across DST"],
)
def test_explicit_dates_on_the_schedule_match_the_window_expansion(
    timetable: Any, wanted: list[pendulum.DateTime]
) -> None:
    from_window = dates_in_window(timetable, min(wanted), max(wanted), LATER)

    dates = dates_from_list(timetable, wanted, LATER)

    assert dates == [d for d in from_window if d.logical_date in wanted]
    assert logical_dates(dates) == sorted(wanted)


@pytest.mark.parametrize(
    ("timetable", "date", "before", "after"),
    [
        (DAILY, "2024-01-01T03:00", "2024-01-01", "2024-01-02"),
        (DAILY, "2024-02-29T12:00", "2024-02-29", "2024-03-01"),
        (CronTriggerTimetable("0 0 * * 1", timezone="UTC"), "2024-01-03", "2024-01-01", "2024-01-08"),
        (CronTriggerTimetable("0 0 1 * *", timezone="UTC"), "2024-02-15", "2024-02-01", "2024-03-01"),
        (CronTriggerTimetable("0 0 1 1 *", timezone="UTC"), "2024-06-15", "2024-01-01", "2025-01-01"),
        (NEW_YORK_6AM, "2024-03-10T11:00Z", "2024-03-10T10:00Z", "2024-03-11T10:00Z"),
    ],
    ids=[
        "daily, a few hours off",
        "daily, on leap day",
        "weekly on Mondays, a Wednesday",
        "monthly, mid-month",
        "yearly, mid-year",
        "New York, the pre-DST hour after spring forward",
    ],
)
def test_nearest_valid_dates_surround_an_off_schedule_date(
    timetable: Any, date: str, before: str, after: str
) -> None:
    assert nearest_valid(timetable, dt(date)) == (dt(before), dt(after))


def test_explicit_date_off_the_schedule_is_refused_naming_the_nearest_valid_dates() -> None:
    with pytest.raises(ScheduleError) as excinfo:
        dates_from_list(DAILY, dts("2024-01-01", "2024-01-02T03:00"), LATER)

    assert excinfo.value.field == "dates"
    message = str(excinfo.value)
    assert "2024-01-02T03:00:00+00:00 is not a logical date" in message
    assert "nearest valid: 2024-01-02T00:00:00+00:00 or 2024-01-03T00:00:00+00:00" in message


@pytest.mark.parametrize(
    ("timetable", "date", "now"),
    [
        (DAILY_INTERVAL, "2024-01-03", "2024-01-03T12:00"),
        (DAILY_INTERVAL, "2024-01-03", "2024-01-04T00:00"),
        (DAILY, "2024-01-03", "2024-01-03T00:00"),
    ],
    ids=["interval still running", "interval ending exactly now", "trigger date exactly now"],
)
def test_explicit_date_that_has_not_ended_is_refused(timetable: Any, date: str, now: str) -> None:
    with pytest.raises(ScheduleError) as excinfo:
        dates_from_list(timetable, dts("2024-01-01", date), dt(now))

    assert excinfo.value.field == "dates"
    assert f"{dt(date).isoformat()} has not ended yet" in str(excinfo.value)


# --- expand: the request's entry point -------------------------------------------------------


def test_expand_uses_the_window_of_a_window_request() -> None:
    request = BackfillRequest("sales", start_date=dt("2024-01-01"), end_date=dt("2024-01-03"))

    assert expand(DAILY, request, LATER) == dates_in_window(DAILY, dt("2024-01-01"), dt("2024-01-03"), LATER)


def test_expand_uses_the_list_of_a_dates_request() -> None:
    request = BackfillRequest("sales", dates=(dt("2024-01-01"), dt("2024-01-03")))

    assert logical_dates(expand(DAILY, request, LATER)) == dts("2024-01-01", "2024-01-03")


def test_expand_is_oldest_first_even_when_running_backwards() -> None:
    """run_backwards orders the plan, not the expansion."""
    request = BackfillRequest(
        "sales", start_date=dt("2024-01-01"), end_date=dt("2024-01-03"), run_backwards=True
    )

    assert logical_dates(expand(DAILY, request, LATER)) == dts("2024-01-01", "2024-01-02", "2024-01-03")


def test_scheduled_date_round_trips_through_its_dict() -> None:
    (date,) = dates_in_window(NEW_YORK_6AM, dt("2024-03-09"), dt("2024-03-09T23:59"), LATER)

    assert ScheduledDate.from_dict(date.to_dict()) == date


# --- the property the controller relies on ---------------------------------------------------


@pytest.mark.parametrize(
    ("timetable", "start", "end"),
    [
        (DAILY, "2023-12-30", "2024-03-02"),
        (DAILY_INTERVAL, "2023-12-30", "2024-03-02"),
        (NEW_YORK_6AM, "2024-03-05", "2024-03-15"),
        (NEW_YORK_6AM, "2024-10-29", "2024-11-08"),
        (BERLIN_0130, "2024-03-25", "2024-04-05"),
        (BERLIN_0130, "2024-10-22", "2024-11-02"),
        (EVERY_12_HOURS, "2024-02-27", "2024-03-02"),
    ],
    ids=[
        "daily trigger over new year and leap day",
        "daily interval over new year and leap day",
        "New York spring forward",
        "New York fall back",
        "Berlin spring forward",
        "Berlin fall back",
        "12-hour delta over leap day",
    ],
)
def test_triggering_with_run_after_reproduces_the_data_interval(timetable: Any, start: str, end: str) -> None:
    """The controller triggers each date with its run_after; Airflow must infer the same interval."""
    dates = dates_in_window(timetable, dt(start), dt(end), LATER)

    assert len(dates) > 5
    for date in dates:
        inferred = timetable.infer_manual_data_interval(run_after=date.run_after)
        assert (inferred.start, inferred.end) == (date.data_interval_start, date.data_interval_end), date


def test_explicit_dates_of_a_timedelta_schedule_are_each_their_own_anchor() -> None:
    # Native backfill anchors a timedelta schedule at the window start, so any instant is a valid
    # logical date; a list is checked date by date, never against its first date.
    dates = dates_from_list(EVERY_12_HOURS, dts("2024-01-01", "2024-01-01T05:00"), LATER)

    assert [d.logical_date for d in dates] == dts("2024-01-01", "2024-01-01T05:00")


def test_a_window_past_the_limit_is_refused_at_the_first_date_over() -> None:
    with pytest.raises(ScheduleError) as refused:
        dates_in_window(DAILY, dt("2024-01-01"), dt("2024-01-31"), LATER, limit=10)
    assert refused.value.field == "end_date"
    assert "more than 10 dates" in str(refused.value) and "2024-01-11" in str(refused.value)


# --- a cron timetable parsed once gives the timetable's own dates --------------------------------


def _timetable_dates(timetable: Any, start: Any, end: Any) -> list[tuple[Any, ...]]:
    """The timetable's own dates in ``[start, end]``, asked of it one by one (Airflow's way)."""
    from airflow.timetables.base import TimeRestriction

    restriction, info, found = TimeRestriction(start, end, catchup=True), None, []
    while (info := timetable.next_dagrun_info_v2(last_dagrun_info=info, restriction=restriction)) is not None:
        found.append((info.logical_date, info.run_after, info.data_interval.start, info.data_interval.end))
    return found


@pytest.mark.parametrize(
    "timetable",
    [
        CronTriggerTimetable("*/5 * * * *", timezone="UTC"),
        CronTriggerTimetable("30 * * * *", timezone="Europe/Zurich"),
        CronTriggerTimetable("0 2 * * *", timezone="America/New_York"),
        CronTriggerTimetable("0 9 * * 1-5", timezone="Europe/Zurich", interval=timedelta(hours=1)),
        CronTriggerTimetable("0 0 31 * *", timezone="UTC"),
        CronDataIntervalTimetable("*/20 * * * *", timezone="Europe/Zurich"),
        CronDataIntervalTimetable("0 3 * * 0", timezone="America/New_York"),
        CronDataIntervalTimetable("@monthly", timezone="Asia/Kolkata"),
    ],
    ids=lambda t: f"{type(t).__name__} {t._expression} {t._timezone.name}",
)
def test_a_cron_timetable_parsed_once_gives_the_timetables_own_dates(timetable):
    # Both of the year's daylight-saving changes, in Europe and in America.
    for start, end in (
        (pendulum.datetime(2023, 3, 10), pendulum.datetime(2023, 4, 3)),
        (pendulum.datetime(2023, 10, 25), pendulum.datetime(2023, 11, 9)),
    ):
        window = list(_iter_window(timetable, start, end))
        assert [
            (d.logical_date, d.run_after, d.data_interval_start, d.data_interval_end) for d in window
        ] == (_timetable_dates(timetable, start, end))
        assert window, "the window has dates"


@pytest.mark.parametrize(
    "timetable",
    [
        CronTriggerTimetable("*/5 * * * *", timezone="UTC"),
        CronTriggerTimetable("* * * * *", timezone="UTC"),
        CronTriggerTimetable("@hourly", timezone="UTC", interval=timedelta(minutes=30)),
        CronTriggerTimetable("7,37 */3 * * *", timezone="UTC"),
        CronDataIntervalTimetable("@daily", timezone="UTC"),
        CronDataIntervalTimetable("15 4,22 * * *", timezone=pendulum.FixedTimezone(19800)),
        CronDataIntervalTimetable("*/20 * * * *", timezone="Europe/Zurich"),  # not the same every day
        CronTriggerTimetable("0 0 29 * *", timezone="UTC"),  # not every day
    ],
    ids=lambda t: f"{type(t).__name__} {t._expression} {t._timezone.name}",
)
def test_the_next_and_previous_schedule_parsed_once_are_airflows_at_any_instant(timetable):
    fast = parsed_once(timetable)
    instants = [
        pendulum.datetime(2024, 2, 28, 23, 59, 59),
        pendulum.datetime(2024, 2, 29, 0, 0),
        pendulum.datetime(2024, 12, 31, 23, 55),
        pendulum.datetime(2024, 12, 31, 23, 57, 30, 5),
        pendulum.datetime(2025, 1, 1, 0, 0, 0, 1),
        pendulum.datetime(2023, 3, 26, 1, 30),
        pendulum.datetime(2023, 10, 29, 0, 37),
        *(pendulum.datetime(2024, 6, 30, 21, 0) + timedelta(minutes=7 * k, seconds=k % 3) for k in range(80)),
    ]
    for instant in instants:
        assert fast._get_next(instant) == timetable._get_next(instant), instant
        assert fast._get_prev(instant) == timetable._get_prev(instant), instant
        assert fast._align_to_next(instant) == timetable._align_to_next(instant), instant
        assert fast._align_to_prev(instant) == timetable._align_to_prev(instant), instant


def test_another_timetable_is_used_as_it_is():
    delta = DeltaDataIntervalTimetable(timedelta(hours=1))
    assert parsed_once(delta) is delta
