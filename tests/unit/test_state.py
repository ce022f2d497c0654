"""Specification of a backfill's state: where each date is, the counts, and the phase.

The truth about a date is what happened to its run, not the state of the task that acted on it
(:mod:`backfill_controller.domain.state`). Every case is one controller run's facts, as the report, the
Backfills page and the CLI gather them, read through :func:`segment_dates`.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState

from backfill_controller.domain.plan import Action
from backfill_controller.domain.state import (
    FAILED_DATES,
    ChunkRecord,
    Counts,
    DateOutcome,
    DateState,
    Event,
    EventKind,
    Phase,
    RunState,
    SegmentFacts,
    TaskState,
    acted_on,
    adopted_run_ids,
    count,
    failed_dates,
    open_run_ids,
    phase,
    possible_phases,
    records_by_chunk,
    run_date_state,
    run_states_of,
    segment_dates,
    window_complete,
)

# --- the state names are Airflow's -------------------------------------------------------------


def test_every_run_state_is_one_of_airflows_dag_run_states() -> None:
    assert {s.value for s in RunState} <= {s.value for s in DagRunState}


def test_every_task_state_is_one_of_airflows_task_instance_states() -> None:
    assert {s.value for s in TaskState} <= {s.value for s in TaskInstanceState}


@pytest.mark.parametrize("run_state", list(DagRunState), ids=[s.value for s in DagRunState])
def test_every_airflow_run_state_is_a_date_state_of_its_own(run_state: DagRunState) -> None:
    """A run state Airflow has, read as "pending", would keep a backfill waiting for a finished run."""
    assert run_date_state(run_state.value).value == run_state.value


def test_a_run_state_airflow_may_add_reads_as_not_finished() -> None:
    assert run_date_state("some_new_state") is DateState.PENDING


# --- one controller run's facts ----------------------------------------------------------------


def plan(day: int, action: str = "triggered", **extra: Any) -> dict[str, Any]:
    return {
        "logical_date": f"2024-01-{day:02d}T00:00:00+00:00",
        "run_id": extra.pop("run_id", f"r{day}"),
        "action": action,
        "why": extra.pop("why", "no run yet" if action == "triggered" else ""),
        "existing_state": extra.pop("existing_state", None),
        **extra,
    }


def facts(
    plans: list[dict[str, Any]],
    *,
    chunk_size: int = 2,
    chunks: dict[int, str | None] | None = None,
    records: dict[int, ChunkRecord] | None = None,
    runs: dict[str, str | None] | None = None,
    finished: bool = False,
    dry_run: bool = False,
    run_ids: list[str] | None = None,
) -> SegmentFacts:
    acting = [p["run_id"] for p in plans if p["action"] in ("triggered", "cleared")]
    return SegmentFacts(
        plans=plans,
        run_ids=acting if run_ids is None else run_ids,
        chunk_size=chunk_size,
        chunk_states=chunks or {},
        records=records or {},
        run_states=runs or {},
        finished=finished,
        dry_run=dry_run,
    )


def shown(date: DateOutcome) -> tuple[str, str, str, str | None]:
    """``(action, state, run_id, run_state)`` of one date."""
    return date.action.value, date.state.value, date.run_id, date.run_state


TWO = [plan(1), plan(2)]
NOT_STARTED_CHUNK_FAILED = "not started: its trigger task failed (see its log)"
REFUSAL = "Airflow refused the run (HTTP 400): Dag with dag_id 'sales' does not allow operator-triggered runs"
ADOPTION = "scheduled__2024-01-01 had this logical date first; its outcome is this date's"

# (facts, index of the date looked at, (action, state, run_id, run_state), why or None)
CASES: dict[str, tuple[SegmentFacts, int, tuple[str, str, str, str | None], str | None]] = {
    # the chunk finished: each date is where its run is
    "chunk success, run succeeded": (
        facts(TWO, chunks={0: "success"}, runs={"r1": "success"}),
        0,
        ("triggered", "success", "r1", "success"),
        "no run yet",
    ),
    "chunk success, run failed": (
        facts(TWO, chunks={0: "success"}, runs={"r1": "failed"}),
        0,
        ("triggered", "failed", "r1", "failed"),
        None,
    ),
    "chunk success, run queued": (
        facts(TWO, chunks={0: "success"}, runs={"r1": "queued"}),
        0,
        ("triggered", "queued", "r1", "queued"),
        None,
    ),
    "chunk success, run not visible yet": (
        facts(TWO, chunks={0: "success"}),
        1,
        ("triggered", "pending", "r2", None),
        None,
    ),
    # a new run that exists was created by the backfill, whatever became of the chunk's task
    "chunk running, its new run exists": (
        facts(TWO, chunks={0: "running"}, runs={"r1": "running"}),
        0,
        ("triggered", "running", "r1", "running"),
        None,
    ),
    "chunk deferred for room, its new run done": (
        facts(TWO, chunks={0: "deferred"}, runs={"r1": "success"}),
        0,
        ("triggered", "success", "r1", "success"),
        None,
    ),
    "chunk waiting to retry, its new run exists": (
        facts(TWO, chunks={0: "up_for_retry"}, runs={"r1": "queued"}),
        0,
        ("triggered", "queued", "r1", "queued"),
        None,
    ),
    "chunk failed part-way: its created run is waited for, shown running": (
        facts(TWO, chunks={0: "failed"}, runs={"r1": "running"}),
        0,
        ("triggered", "running", "r1", "running"),
        None,
    ),
    "chunk failed part-way: the date it never reached is cancelled": (
        facts(TWO, chunks={0: "failed"}, runs={"r1": "running"}),
        1,
        ("cancelled", "cancelled", "r2", None),
        NOT_STARTED_CHUNK_FAILED,
    ),
    "chunk upstream_failed: cancelled": (
        facts(TWO, chunks={0: "upstream_failed"}),
        0,
        ("cancelled", "cancelled", "r1", None),
        NOT_STARTED_CHUNK_FAILED,
    ),
    "chunk removed: cancelled": (
        facts(TWO, chunks={0: "removed"}),
        0,
        ("cancelled", "cancelled", "r1", None),
        NOT_STARTED_CHUNK_FAILED,
    ),
    "chunk running, date not reached yet": (
        facts(TWO, chunks={0: "running"}, runs={"r1": "running"}),
        1,
        ("triggered", "pending", "r2", None),
        "no run yet",
    ),
    "chunk not started yet": (facts(TWO), 0, ("triggered", "pending", "r1", None), "no run yet"),
    "chunk never started and the controller run ended": (
        facts(TWO, finished=True),
        0,
        ("cancelled", "cancelled", "r1", None),
        "not started: the backfill ended first",
    ),
    "chunk skipped: the backfill was cancelled": (
        facts(TWO, chunks={0: "skipped"}),
        1,
        ("cancelled", "cancelled", "r2", None),
        "not started: the backfill was cancelled",
    ),
    "the record says why the chunk stopped": (
        facts(
            TWO,
            chunks={0: "skipped"},
            records={0: ChunkRecord(0, 0, stopped="max_failed_dates reached (2 dates failed)")},
        ),
        0,
        ("cancelled", "cancelled", "r1", None),
        "not started: max_failed_dates reached (2 dates failed)",
    ),
    "a stopped chunk's dates acted on before it stopped keep their run": (
        facts(
            TWO,
            chunks={0: "failed"},
            records={0: ChunkRecord(0, 1, stopped="timed out")},
            runs={"r1": "success"},
        ),
        0,
        ("triggered", "success", "r1", "success"),
        None,
    ),
    "a stopped chunk's dates not acted on show its reason": (
        facts(TWO, chunks={0: "failed"}, records={0: ChunkRecord(0, 1, stopped="timed out")}),
        1,
        ("cancelled", "cancelled", "r2", None),
        "not started: timed out",
    ),
    # what Airflow answered for one date
    "refused: trigger_failed with Airflow's message": (
        facts(
            TWO,
            chunks={0: "success"},
            records={0: ChunkRecord(0, 2, {"r1": Event(EventKind.REFUSED, REFUSAL)})},
        ),
        0,
        ("triggered", "trigger_failed", "r1", None),
        REFUSAL,
    ),
    "refused while the chunk still runs": (
        facts(
            TWO,
            chunks={0: "running"},
            records={0: ChunkRecord(0, 1, {"r1": Event(EventKind.REFUSED, REFUSAL)})},
        ),
        0,
        ("triggered", "trigger_failed", "r1", None),
        REFUSAL,
    ),
    "adopted: the other run carries the date": (
        facts(
            TWO,
            chunks={0: "running"},
            records={0: ChunkRecord(0, 1, {"r1": Event(EventKind.ADOPTED, ADOPTION, "scheduled__01")})},
            runs={"scheduled__01": "running"},
        ),
        0,
        ("adopted", "running", "scheduled__01", "running"),
        ADOPTION,
    ),
    "adopted run failed: the date failed": (
        facts(
            TWO,
            chunks={0: "success"},
            records={0: ChunkRecord(0, 2, {"r1": Event(EventKind.ADOPTED, ADOPTION, "scheduled__01")})},
            runs={"scheduled__01": "failed", "r1": None},
        ),
        0,
        ("adopted", "failed", "scheduled__01", "failed"),
        ADOPTION,
    ),
    # a cleared run exists before the backfill acts: only the chunk's success or its record says it acted
    "cleared, chunk running, not acted on: its old failure means nothing yet": (
        facts([plan(1, "cleared", existing_state="failed")], chunks={0: "running"}, runs={"r1": "failed"}),
        0,
        ("cleared", "pending", "r1", "failed"),
        None,
    ),
    "cleared, chunk running, acted on per its record": (
        facts(
            [plan(1, "cleared", existing_state="failed")],
            chunks={0: "running"},
            records={0: ChunkRecord(0, 1)},
            runs={"r1": "queued"},
        ),
        0,
        ("cleared", "queued", "r1", "queued"),
        None,
    ),
    "cleared, chunk success": (
        facts([plan(1, "cleared", existing_state="failed")], chunks={0: "success"}, runs={"r1": "success"}),
        0,
        ("cleared", "success", "r1", "success"),
        None,
    ),
    "cleared, chunk failed before acting: cancelled, keeps the old run's state": (
        facts([plan(1, "cleared", existing_state="failed")], chunks={0: "failed"}, runs={"r1": "failed"}),
        0,
        ("cancelled", "cancelled", "r1", "failed"),
        NOT_STARTED_CHUNK_FAILED,
    ),
    # dates in the second chunk are read through their own chunk's state and record
    "second chunk: its own state counts": (
        facts([plan(1), plan(2), plan(3)], chunks={0: "success", 1: "skipped"}, runs={"r1": "success"}),
        2,
        ("cancelled", "cancelled", "r3", None),
        "not started: the backfill was cancelled",
    ),
    "second chunk: acted counts from the chunk's first date": (
        facts(
            [plan(1, "cleared"), plan(2, "cleared"), plan(3, "cleared")],
            chunks={0: "success", 1: "running"},
            records={1: ChunkRecord(1, 1)},
            runs={"r1": "success", "r2": "success", "r3": "running"},
        ),
        2,
        ("cleared", "running", "r3", "running"),
        None,
    ),
    # not acted on at all
    "dry run: planned": (
        facts([plan(1, "cleared", existing_state="failed")], dry_run=True, run_ids=[]),
        0,
        ("cleared", "planned", "r1", "failed"),
        None,
    ),
    "left alone by the plan: where its run was when planned": (
        facts(
            [plan(1), plan(2, "skipped", existing_state="running", why="in flight: its run is running")],
            chunks={0: "success"},
            runs={"r1": "success"},
        ),
        1,
        ("skipped", "running", "r2", "running"),
        "in flight: its run is running",
    ),
    "left alone by the plan: where its run is, as the reader found it": (
        facts(
            [plan(1), plan(2, "skipped", existing_state="running", why="in flight: its run is running")],
            chunks={0: "success"},
            runs={"r1": "success", "r2": "failed"},
        ),
        1,
        ("skipped", "failed", "r2", "failed"),
        "in flight: its run is running",
    ),
    "left alone by the plan with no run: skipped": (
        facts([plan(1, "skipped", why="no run yet, and Airflow 3 cannot run part of a DAG")], run_ids=[]),
        0,
        ("skipped", "skipped", "r1", None),
        "no run yet, and Airflow 3 cannot run part of a DAG",
    ),
    "dry run, left alone: where its run is": (
        facts([plan(1, "skipped", existing_state="failed")], dry_run=True, run_ids=[]),
        0,
        ("skipped", "failed", "r1", "failed"),
        None,
    ),
    "a later segment not planned yet": (
        facts([plan(1)], run_ids=[]),
        0,
        ("triggered", "pending", "r1", None),
        "",
    ),
    "a later segment never planned: cancelled": (
        facts([plan(1)], run_ids=[], finished=True),
        0,
        ("cancelled", "cancelled", "r1", None),
        "not started: the backfill ended first",
    ),
}


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_segment_dates(name: str) -> None:
    given, index, expected, why = CASES[name]

    dates = segment_dates(given)

    assert [d.logical_date for d in dates] == [p["logical_date"] for p in given.plans]
    assert shown(dates[index]) == expected
    if why is not None:
        assert dates[index].why == why


# --- a date the plan left alone ----------------------------------------------------------------

LEFT_ALONE_WHY = "run exists; reprocess=missing leaves it as it is"


def left_alone(run_state: str, *, dry_run: bool = False) -> SegmentFacts:
    """Jan 1 triggered and succeeded; Jan 2 left alone, its run in ``run_state``."""
    return facts(
        [plan(1), plan(2, "skipped", existing_state=run_state, why=LEFT_ALONE_WHY)],
        chunks={0: "success"},
        runs={"r1": "success"},
        finished=True,
        dry_run=dry_run,
    )


@pytest.mark.parametrize("run_state", ["success", "failed", "queued", "running"])
def test_a_date_left_alone_reads_the_state_of_its_run(run_state: str) -> None:
    date = segment_dates(left_alone(run_state))[1]

    assert shown(date) == ("skipped", run_state, "r2", run_state)
    assert date.why == LEFT_ALONE_WHY
    assert date.left_alone


def test_a_date_left_alone_with_no_run_reads_skipped() -> None:
    (date,) = segment_dates(facts([plan(1, "skipped", why="no run yet")], run_ids=[], finished=True))

    assert shown(date) == ("skipped", "skipped", "r1", None)


def test_a_dry_runs_dates_to_act_on_stay_planned_and_those_left_alone_read_their_run() -> None:
    dates = segment_dates(left_alone("failed", dry_run=True))

    assert [shown(d) for d in dates] == [
        ("triggered", "planned", "r1", None),
        ("skipped", "failed", "r2", "failed"),
    ]


def test_a_date_left_alone_does_not_fail_the_backfill() -> None:
    dates = segment_dates(left_alone("failed"))

    assert failed_dates(dates) == 0
    assert count(dates) == Counts(dates=2, acting=1, succeeded=1, skipped=1)


def test_a_date_left_alone_in_flight_is_not_waited_for_nor_keeps_the_backfill_cancelling() -> None:
    dates = segment_dates(left_alone("running"))

    assert open_run_ids(dates) == []
    assert count(dates).in_flight == 0
    assert (
        phase("failed", planned=True, dry_run=False, reported=False, counts=count(dates)) is Phase.CANCELLED
    )


def test_only_the_dates_acted_on_are_the_backfills_own() -> None:
    dates = segment_dates(left_alone("failed"))

    assert acted_on(dates) == dates[:1]


@pytest.mark.parametrize(
    ("run_state", "dry_run", "whole"),
    [("success", False, True), ("failed", False, False), ("running", False, False), ("success", True, False)],
    ids=["left alone, succeeded", "left alone, failed", "left alone, running", "dry run: a date to trigger"],
)
def test_the_window_is_whole_when_every_date_has_a_successful_run(
    run_state: str, dry_run: bool, whole: bool
) -> None:
    assert window_complete(segment_dates(left_alone(run_state, dry_run=dry_run))) is whole


def test_a_dry_run_of_dates_that_all_have_a_successful_run_says_the_window_is_whole_already() -> None:
    dates = segment_dates(
        facts(
            [plan(1, "cleared", existing_state="success"), plan(2, "skipped", existing_state="success")],
            dry_run=True,
            run_ids=[],
        )
    )

    assert window_complete(dates) is True


def test_a_window_with_a_date_that_has_no_run_is_not_whole() -> None:
    dates = segment_dates(facts([plan(1, "skipped", why="no run yet")], run_ids=[], finished=True))

    assert window_complete(dates) is False


def test_a_chunk_failing_part_way_waits_for_the_runs_it_created() -> None:
    dates = segment_dates(facts(TWO, chunks={0: "failed"}, runs={"r1": "running"}))

    assert open_run_ids(dates) == ["r1"]
    assert count(dates) == Counts(dates=2, acting=2, running=1, cancelled=1)


def test_an_adopted_date_is_waited_for_under_the_other_run() -> None:
    record = ChunkRecord(0, 1, {"r1": Event(EventKind.ADOPTED, ADOPTION, "scheduled__01")})
    dates = segment_dates(
        facts(TWO, chunks={0: "running"}, records={0: record}, runs={"scheduled__01": "queued"})
    )

    assert open_run_ids(dates) == ["scheduled__01"]
    assert adopted_run_ids({0: record}) == ["scheduled__01"]


def test_a_date_outcome_as_a_dict() -> None:
    (date,) = segment_dates(facts([plan(1)], chunks={0: "success"}, runs={"r1": "success"}))

    assert date.to_dict() == {
        "logical_date": "2024-01-01T00:00:00+00:00",
        "run_id": "r1",
        "action": "triggered",
        "state": "success",
        "why": "no run yet",
        "run_state": "success",
    }


# --- counts, the failure budget and the phase ---------------------------------------------------


def outcome(state: DateState, action: Action = Action.TRIGGERED, run_id: str = "r") -> DateOutcome:
    return DateOutcome("2024-01-01T00:00:00+00:00", run_id, action, state, "", None)


def test_count_tallies_each_state() -> None:
    dates = [
        outcome(DateState.PENDING),
        outcome(DateState.QUEUED),
        outcome(DateState.RUNNING),
        outcome(DateState.RUNNING),
        outcome(DateState.SUCCESS),
        outcome(DateState.FAILED),
        outcome(DateState.TRIGGER_FAILED),
        outcome(DateState.CANCELLED, Action.CANCELLED),
        outcome(DateState.SKIPPED, Action.SKIPPED),
        outcome(DateState.FAILED, Action.SKIPPED),
        outcome(DateState.RUNNING, Action.SKIPPED),
    ]

    tally = count(dates)

    assert tally == Counts(
        dates=11, acting=8, pending=1, queued=1, running=2, succeeded=1, failed=2, cancelled=1, skipped=3
    )
    assert tally.finished == 4
    assert tally.to_dict()["finished"] == 4
    assert Counts.from_dict(tally.to_dict()) == tally


def test_a_dry_runs_dates_are_planned_and_none_is_acting() -> None:
    tally = count([outcome(DateState.PLANNED), outcome(DateState.SKIPPED, Action.SKIPPED)])

    assert (tally.dates, tally.acting, tally.planned, tally.skipped, tally.finished) == (2, 0, 1, 1, 0)


def test_nothing_counts_as_nothing() -> None:
    assert count([]) == Counts()


def test_failed_and_trigger_failed_dates_count_against_the_budget_cancelled_ones_do_not() -> None:
    dates = [outcome(s) for s in DateState] + [
        outcome(DateState.FAILED),
        outcome(DateState.FAILED, Action.SKIPPED),
    ]

    assert failed_dates(dates) == 3
    assert {DateState.FAILED, DateState.TRIGGER_FAILED} == FAILED_DATES


def test_open_run_ids_are_the_queued_and_running_dates_runs() -> None:
    dates = [outcome(s, run_id=f"run_{s.value}") for s in DateState]
    dates += [outcome(DateState.RUNNING, Action.SKIPPED, "left_alone")]

    assert open_run_ids(dates) == ["run_queued", "run_running"]


@pytest.mark.parametrize(
    ("controller_state", "given", "expected"),
    [
        (None, {}, Phase.QUEUED),
        ("queued", {}, Phase.QUEUED),
        ("running", {"planned": False}, Phase.PLANNING),
        ("running", {}, Phase.RUNNING),
        ("running", {"reported": False}, Phase.RUNNING),
        ("success", {}, Phase.SUCCEEDED),
        ("success", {"dry_run": True}, Phase.PLANNED),
        ("failed", {"reported": True}, Phase.FAILED),
        ("failed", {}, Phase.FAILED),
        ("failed", {"reported": False, "counts": Counts(dates=3, running=1, cancelled=2)}, Phase.CANCELLING),
        ("failed", {"reported": False, "counts": Counts(dates=3, queued=1, cancelled=2)}, Phase.CANCELLING),
        ("failed", {"reported": False, "counts": Counts(dates=3, succeeded=1, cancelled=2)}, Phase.CANCELLED),
        ("failed", {"reported": False, "planned": False}, Phase.FAILED),
        ("failed", {"reported": False, "dry_run": True}, Phase.FAILED),
        ("running", {"paused": True}, Phase.PAUSED),
        ("running", {"paused": True, "planned": False}, Phase.PLANNING),
        ("failed", {"reported": False, "paused": True}, Phase.CANCELLED),
        ("success", {"paused": True}, Phase.SUCCEEDED),
    ],
    ids=[
        "not created yet",
        "queued",
        "planning",
        "running",
        "running, report not run yet",
        "succeeded",
        "dry run planned",
        "failed, with its report",
        "failed, report not known",
        "cancelled, a run still running: cancelling",
        "cancelled, a run still queued: cancelling",
        "cancelled, nothing open",
        "failed before planning",
        "dry run failed",
        "paused",
        "paused while planning: planning",
        "paused, then cancelled",
        "paused with nothing left to start, then ended",
    ],
)
def test_phase(controller_state: str | None, given: dict[str, Any], expected: Phase) -> None:
    kwargs = {"planned": True, "dry_run": False, "counts": Counts(dates=3), **given}

    assert phase(controller_state, **kwargs) is expected


# --- filtering backfills by phase (the Backfills page's ?state=) ------------------------------


@pytest.mark.parametrize(
    ("wanted", "states"),
    [
        (Phase.QUEUED, {None, "queued"}),
        (Phase.PLANNING, {"running"}),
        (Phase.PLANNED, {"running", "success"}),
        (Phase.RUNNING, {"running"}),
        (Phase.PAUSED, {"running"}),
        (Phase.CANCELLING, {"failed"}),
        (Phase.CANCELLED, {"failed"}),
        (Phase.SUCCEEDED, {"success"}),
        (Phase.FAILED, {"failed"}),
    ],
    ids=[p.value for p in Phase],
)
def test_each_phase_has_the_controller_run_states_a_database_can_filter_on(
    wanted: Phase, states: set[str | None]
) -> None:
    assert run_states_of(wanted) == states


#: Every controller run state (None: not created yet) with every combination of the other facts.
FACTS: list[tuple[str | None, dict[str, Any]]] = [
    (state, {"planned": planned, "dry_run": dry_run, "reported": reported})
    for state, planned, dry_run, reported in product(
        (None, *RunState), (False, True), (False, True), (None, False, True)
    )
]
UNDECIDED = ("failed", {"planned": True, "dry_run": False, "reported": False})


def test_the_counts_decide_only_between_cancelling_and_cancelled() -> None:
    undecided = possible_phases("failed", planned=True, dry_run=False, reported=False)
    assert undecided == {Phase.CANCELLING, Phase.CANCELLED}
    for state, facts in FACTS:
        phases = possible_phases(state, **facts)
        assert len(phases) == 1 or (phases == undecided and (state, facts) == UNDECIDED)


@pytest.mark.parametrize(
    "counts",
    [Counts(), Counts(dates=2, queued=1), Counts(dates=2, running=2), Counts(dates=2, cancelled=2)],
    ids=["none", "one queued", "running", "all cancelled"],
)
def test_the_phase_is_always_one_of_the_possible_phases(counts: Counts) -> None:
    for state, facts in FACTS:
        assert phase(state, counts=counts, **facts) in possible_phases(state, **facts)
        assert state in run_states_of(phase(state, counts=counts, **facts))


# --- what each trigger task records -------------------------------------------------------------


RECORD = ChunkRecord(
    3,
    acted=2,
    events={
        "r1": Event(EventKind.REFUSED, "no"),
        "r2": Event(EventKind.ADOPTED, ADOPTION, "scheduled__02"),
    },
    stopped="max_failed_dates reached (1 dates failed)",
)


def test_a_chunk_record_survives_its_xcom() -> None:
    stored = RECORD.to_dict()

    assert stored == {
        "chunk": 3,
        "acted": 2,
        "events": {
            "r1": {"kind": "refused", "message": "no", "run_id": None},
            "r2": {"kind": "adopted", "message": ADOPTION, "run_id": "scheduled__02"},
        },
        "stopped": "max_failed_dates reached (1 dates failed)",
    }
    assert ChunkRecord.from_dict(stored) == RECORD
    assert ChunkRecord.from_dict(ChunkRecord(0).to_dict()) == ChunkRecord(0)


@pytest.mark.parametrize(
    "value", [None, "text", [], {"acted": 1}, {"chunk": "0"}], ids=["none", "text", "list", "no chunk", "str"]
)
def test_anything_else_is_no_chunk_record(value: Any) -> None:
    assert ChunkRecord.from_dict(value) is None


def test_records_by_chunk_from_one_xcom_value() -> None:
    assert records_by_chunk(RECORD.to_dict()) == {3: RECORD}


def test_records_by_chunk_from_a_list_of_them_skipping_what_is_not_one() -> None:
    values = [ChunkRecord(0, 2).to_dict(), None, RECORD.to_dict(), "garbage"]

    assert records_by_chunk(values) == {0: ChunkRecord(0, 2), 3: RECORD}


def test_records_by_chunk_from_nothing() -> None:
    assert records_by_chunk(None) == {}
    assert records_by_chunk([]) == {}
