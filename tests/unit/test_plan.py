"""Specification of planning: what happens to each date, in which order, and how dates are chunked."""

from __future__ import annotations

import pendulum
import pytest

from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.plan import (
    DEFERRAL_MARGIN_SECONDS,
    WHOLE_SEGMENT,
    Action,
    DatePlan,
    ExistingRun,
    Feeding,
    acting,
    chunk_bounds,
    chunk_count,
    chunk_of,
    date_states,
    decide,
    feeding,
    first_window,
    min_deferral_seconds,
    new_run_id,
    room,
)
from backfill_controller.domain.request import BackfillRequest, Reprocess
from backfill_controller.domain.schedule import ScheduledDate
from backfill_controller.domain.segments import MAX_MAP_LENGTH

JAN_1 = pendulum.datetime(2024, 1, 1, tz="UTC")


def scheduled(day: int) -> ScheduledDate:
    logical = JAN_1.add(days=day - 1)
    return ScheduledDate(logical, logical.add(days=1), logical, logical.add(days=1))


def existing_run(day: int, state: str) -> ExistingRun:
    return ExistingRun(
        run_id=f"scheduled__2024-01-{day:02d}", state=state, logical_date=scheduled(day).logical_date
    )


def request(reprocess: Reprocess = Reprocess.MISSING, run_backwards: bool = False) -> BackfillRequest:
    return BackfillRequest("sales", dates=(JAN_1,), reprocess=reprocess, run_backwards=run_backwards)


# --- one date --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reprocess", "state", "action"),
    [
        (Reprocess.MISSING, None, Action.TRIGGERED),
        (Reprocess.MISSING, "success", Action.SKIPPED),
        (Reprocess.MISSING, "failed", Action.SKIPPED),
        (Reprocess.MISSING, "queued", Action.SKIPPED),
        (Reprocess.MISSING, "running", Action.SKIPPED),
        (Reprocess.FAILED, None, Action.TRIGGERED),
        (Reprocess.FAILED, "success", Action.SKIPPED),
        (Reprocess.FAILED, "failed", Action.CLEARED),
        (Reprocess.FAILED, "queued", Action.SKIPPED),
        (Reprocess.FAILED, "running", Action.SKIPPED),
        (Reprocess.ALL, None, Action.TRIGGERED),
        (Reprocess.ALL, "success", Action.CLEARED),
        (Reprocess.ALL, "failed", Action.CLEARED),
        (Reprocess.ALL, "queued", Action.SKIPPED),
        (Reprocess.ALL, "running", Action.SKIPPED),
    ],
    ids=[
        "missing: no run -> triggered",
        "missing: success -> skipped",
        "missing: failed -> skipped",
        "missing: queued -> skipped",
        "missing: running -> skipped",
        "failed: no run -> triggered",
        "failed: success -> skipped",
        "failed: failed -> cleared",
        "failed: queued -> skipped",
        "failed: running -> skipped",
        "all: no run -> triggered",
        "all: success -> cleared",
        "all: failed -> cleared",
        "all: queued is never touched",
        "all: running is never touched",
    ],
)
def test_decide_per_reprocess_mode_and_existing_run(
    reprocess: Reprocess, state: str | None, action: Action
) -> None:
    existing = {} if state is None else {JAN_1: existing_run(1, state)}

    (plan,) = decide([scheduled(1)], existing, request(reprocess))

    assert plan.action is action
    assert plan.existing_state == state


def test_a_new_run_gets_the_controllers_run_id() -> None:
    (plan,) = decide([scheduled(1)], {}, request())

    assert plan.run_id == new_run_id(JAN_1)
    assert plan.why == "no run yet"


@pytest.mark.parametrize(
    ("reprocess", "state"),
    [(Reprocess.ALL, "success"), (Reprocess.FAILED, "failed"), (Reprocess.MISSING, "success")],
    ids=["cleared after success", "cleared after failure", "skipped"],
)
def test_an_existing_run_keeps_its_own_run_id(reprocess: Reprocess, state: str) -> None:
    run = existing_run(1, state)

    (plan,) = decide([scheduled(1)], {JAN_1: run}, request(reprocess))

    assert plan.run_id == run.run_id


@pytest.mark.parametrize("state", sorted(OPEN_RUN))
def test_an_in_flight_run_is_skipped_and_the_reason_says_so(state: str) -> None:
    (plan,) = decide([scheduled(1)], {JAN_1: existing_run(1, state)}, request(Reprocess.ALL))

    assert plan.why == f"in flight: its run is {state}; not touched"


@pytest.mark.parametrize(
    ("reprocess", "state", "hint"),
    [
        (Reprocess.MISSING, "failed", "reprocess=failed or all re-runs it"),
        (Reprocess.MISSING, "success", "reprocess=all re-runs it"),
        (Reprocess.FAILED, "success", "reprocess=all re-runs it"),
    ],
    ids=["failed run under missing", "successful run under missing", "successful run under failed"],
)
def test_a_skipped_run_says_which_mode_would_re_run_it(reprocess: Reprocess, state: str, hint: str) -> None:
    (plan,) = decide([scheduled(1)], {JAN_1: existing_run(1, state)}, request(reprocess))

    assert plan.why == f"run exists ({state}); {hint}"


def test_an_existing_run_matches_its_date_whatever_its_timezone() -> None:
    """The API may report a logical date in another offset; the same instant is the same date."""
    run = ExistingRun("manual__x", "success", pendulum.datetime(2023, 12, 31, 19, tz="America/New_York"))

    (plan,) = decide([scheduled(1)], {run.logical_date: run}, request())

    assert plan.action is Action.SKIPPED


# --- order -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_backwards", "expected_days"),
    [(False, [1, 2, 3, 4]), (True, [4, 3, 2, 1])],
    ids=["forwards: oldest first", "run_backwards: newest first"],
)
def test_plans_are_in_run_order(run_backwards: bool, expected_days: list[int]) -> None:
    dates = [scheduled(3), scheduled(1), scheduled(4), scheduled(2)]

    plans = decide(dates, {}, request(run_backwards=run_backwards))

    assert [p.logical_date for p in plans] == [scheduled(d).logical_date for d in expected_days]


def test_acting_keeps_triggered_and_cleared_dates_in_run_order() -> None:
    existing = {
        scheduled(2).logical_date: existing_run(2, "success"),
        scheduled(3).logical_date: existing_run(3, "failed"),
        scheduled(4).logical_date: existing_run(4, "running"),
    }
    plans = decide([scheduled(d) for d in (1, 2, 3, 4, 5)], existing, request(Reprocess.FAILED, True))

    assert [(p.logical_date.day, p.action) for p in acting(plans)] == [
        (5, Action.TRIGGERED),
        (3, Action.CLEARED),
        (1, Action.TRIGGERED),
    ]


# --- run ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logical_date", "run_id"),
    [
        (JAN_1, "backfill_controller__2024-01-01T00:00:00+00:00"),
        (
            pendulum.datetime(2024, 3, 10, 6, tz="America/New_York"),
            "backfill_controller__2024-03-10T10:00:00+00:00",
        ),
        (
            pendulum.datetime(2024, 1, 1, 6, 30, 0, 250000, tz="UTC"),
            "backfill_controller__2024-01-01T06:30:00.250000+00:00",
        ),
    ],
    ids=["UTC midnight", "other timezone is written in UTC", "microseconds kept"],
)
def test_new_run_id_is_the_prefix_and_the_utc_logical_date(
    logical_date: pendulum.DateTime, run_id: str
) -> None:
    assert new_run_id(logical_date) == run_id


def test_date_plan_round_trips_through_its_dict() -> None:
    plan = DatePlan(
        scheduled(1), "scheduled__x", Action.CLEARED, "reprocess=all", "success", "2024-01-02T00:05"
    )

    assert DatePlan.from_dict(plan.to_dict()) == plan


# --- chunks ----------------------------------------------------------------------------------


def test_worked_example_of_the_module_docstring() -> None:
    """7 dates, chunk_size=3, max_active_runs=4: [d0 d1 d2] [d3 d4 d5] [d6], a window of four runs."""
    chunks = chunk_count(7, 3)

    assert chunks == 3
    assert [list(chunk_bounds(k, 3, 7)) for k in range(chunks)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert room(open_runs=0, max_active_runs=4) == 4  # d0..d3 start at once
    assert room(open_runs=4, max_active_runs=4) == 0  # d4 waits ...
    assert room(open_runs=3, max_active_runs=4) == 1  # ... until one of them has finished


@pytest.mark.parametrize(
    ("total", "chunk_size", "count"),
    [(7, 3, 3), (6, 3, 2), (1, 3, 1), (0, 3, 0), (5, 1, 5)],
    ids=["last chunk short", "exact multiple", "fewer dates than a chunk", "no dates", "chunks of one"],
)
def test_chunk_count(total: int, chunk_size: int, count: int) -> None:
    assert chunk_count(total, chunk_size) == count


@pytest.mark.parametrize(
    ("chunk_index", "chunk_size", "total", "indexes"),
    [(0, 3, 7, [0, 1, 2]), (2, 3, 7, [6]), (1, 3, 6, [3, 4, 5]), (0, 10, 4, [0, 1, 2, 3])],
    ids=[
        "first chunk full",
        "last chunk short",
        "last chunk full on an exact multiple",
        "single short chunk",
    ],
)
def test_chunk_bounds(chunk_index: int, chunk_size: int, total: int, indexes: list[int]) -> None:
    assert list(chunk_bounds(chunk_index, chunk_size, total)) == indexes


@pytest.mark.parametrize(
    ("total", "chunk_size"),
    [(7, 3), (10, 4), (100, 7), (5, 5), (9, 1), (3, 64)],
    ids=["worked example", "remainder", "many chunks", "one chunk", "chunks of one", "one short chunk"],
)
def test_chunks_cover_every_date_once_in_order(total: int, chunk_size: int) -> None:
    chunks = [chunk_bounds(k, chunk_size, total) for k in range(chunk_count(total, chunk_size))]

    assert [i for chunk in chunks for i in chunk] == list(range(total))
    assert all(chunk_of(i, chunk_size) == k for k, chunk in enumerate(chunks) for i in chunk)


def test_each_date_reads_the_state_of_its_chunks_trigger_task() -> None:
    states = date_states({0: "success", 1: "running"}, dates=5, chunk_size=2)

    assert states == {0: "success", 1: "success", 2: "running", 3: "running", 4: None}


@pytest.mark.parametrize(
    ("open_runs", "max_active_runs", "more"),
    [(0, 16, 16), (15, 16, 1), (16, 16, 0), (20, 16, 0)],
    ids=["empty window", "one slot", "full", "over (runs another way)"],
)
def test_room_is_what_the_window_has_left(open_runs: int, max_active_runs: int, more: int) -> None:
    assert room(open_runs, max_active_runs) == more


@pytest.mark.parametrize(
    ("requested", "targets_own"),
    [(10, 16), (16, 64), (4, None), (1, 2)],
)
def test_when_only_the_window_holds_runs_back_the_feeder_waits_in_its_worker(
    requested: int, targets_own: int | None
) -> None:
    feed = feeding(requested, targets_own)
    expected = Feeding(window=requested, deferred=False, resume_at=requested - 1, chunk_size=WHOLE_SEGMENT)
    assert feed == expected


@pytest.mark.parametrize(
    ("requested", "targets_own", "window", "resume_at"),
    [
        (16, 16, 80, 32),  # 16 running, up to 64 queued behind them; refill once 48 have started
        (32, 16, 80, 32),
        (100, 16, 100, 52),  # the request's window holds more queued runs already
        (16, 4, 20, 8),
        (1, 1, 5, 2),
        (2, 2, 10, 4),
    ],
)
def test_when_the_target_holds_runs_back_the_window_keeps_queued_runs_and_the_feeder_defers(
    requested: int, targets_own: int, window: int, resume_at: int
) -> None:
    feed = feeding(requested, targets_own)
    assert (feed.window, feed.deferred, feed.resume_at) == (window, True, resume_at)
    assert feed.resume_at - targets_own >= targets_own  # queued runs left while the feeder wakes
    assert feed.window - feed.resume_at == 3 * targets_own  # a wake-up starts 3M runs
    assert feed.chunk_size == WHOLE_SEGMENT


def test_a_chunk_size_asked_for_is_kept_and_a_failure_budget_keeps_chunks_small() -> None:
    assert feeding(16, 16, chunk_size=4).chunk_size == 4
    assert feeding(16, 64, chunk_size=4).chunk_size == 4
    assert feeding(16, 16, failure_budget=True).chunk_size == 16
    assert feeding(10, None, failure_budget=True).chunk_size == 10


def test_by_default_a_segment_is_one_chunk_so_no_chunk_waits_its_turn() -> None:
    # A chunk waiting its turn is a scheduled task instance the scheduler reads before the
    # target's tasks (priority 1000) and refuses on every loop.
    assert WHOLE_SEGMENT >= MAX_MAP_LENGTH
    for requested, targets_own in [(16, 16), (10, 16), (4, None), (1, 1)]:
        feed = feeding(requested, targets_own)
        assert chunk_count(MAX_MAP_LENGTH, feed.chunk_size) == 1


def test_feeding_round_trips_through_the_plan_xcom() -> None:
    feed = feeding(16, 16)
    assert Feeding(**feed.to_dict()) == feed


@pytest.mark.parametrize("min_heartbeat_interval", [5.0, 2.0, 1.0])
def test_a_deferred_feeder_resumes_one_heartbeat_interval_and_a_margin_after_deferring(
    min_heartbeat_interval: float,
) -> None:
    # The worker may report the deferred attempt's end up to one heartbeat interval late.
    assert DEFERRAL_MARGIN_SECONDS > 0
    assert min_deferral_seconds(min_heartbeat_interval) == min_heartbeat_interval + DEFERRAL_MARGIN_SECONDS


# --- the first window: the runs the front door starts itself -----------------------------------


def test_the_first_window_is_as_many_dates_as_may_run_at_once_in_run_order() -> None:
    plans = decide([scheduled(d) for d in range(1, 11)], {}, request(run_backwards=True))

    assert [p.logical_date.day for p in first_window(plans, feeding(3, None))] == [10, 9, 8]
    # The target holds runs back: the runs that may run at once, not its queued reserve.
    assert [p.logical_date.day for p in first_window(plans, feeding(16, 4))] == [10, 9, 8, 7]
    assert len(first_window(plans, feeding(16, None, chunk_size=2))) == 2  # one chunk at most


def test_the_first_window_ends_before_the_first_date_to_clear() -> None:
    existing = {scheduled(3).logical_date: existing_run(3, "failed")}
    plans = decide([scheduled(d) for d in range(1, 6)], existing, request(Reprocess.FAILED))

    assert [(p.logical_date.day, p.action) for p in first_window(plans, feeding(10, None))] == [
        (1, Action.TRIGGERED),
        (2, Action.TRIGGERED),
    ]
    assert first_window([], feeding(10, None)) == []
