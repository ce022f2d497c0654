"""Specification of the result: how each date ended, the counts, and when a backfill succeeded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pendulum
import pytest

from include.backfill.plan import Action, DatePlan, ExistingRun, decide
from include.backfill.report import (
    CANCELLED,
    PENDING,
    TRIGGER_FAILED,
    acted_state,
    build_report,
    failed_count,
    outcome,
    render_table,
)
from include.backfill.request import BackfillRequest, Reprocess
from include.backfill.schedule import ScheduledDate

JAN_1 = pendulum.datetime(2024, 1, 1, tz="UTC")
REQUEST = BackfillRequest(
    "sales", start_date=JAN_1, end_date=JAN_1.add(days=3), reprocess=Reprocess.FAILED, reason="outage"
)


def scheduled(day: int) -> ScheduledDate:
    logical = JAN_1.add(days=day - 1)
    return ScheduledDate(logical, logical.add(days=1), logical, logical.add(days=1))


def plans(request: BackfillRequest = REQUEST) -> list[DatePlan]:
    """Jan 1 has no run (triggered), Jan 2 failed (cleared), Jan 3 succeeded, Jan 4 is running (skipped)."""
    existing = {
        scheduled(2).logical_date: ExistingRun("scheduled__02", "failed", scheduled(2).logical_date),
        scheduled(3).logical_date: ExistingRun("scheduled__03", "success", scheduled(3).logical_date),
        scheduled(4).logical_date: ExistingRun("scheduled__04", "running", scheduled(4).logical_date),
    }
    return decide([scheduled(d) for d in (1, 2, 3, 4)], existing, request)


def report(outcomes: dict[str, str], request: BackfillRequest = REQUEST) -> dict[str, Any]:
    return build_report(request, plans(request), outcomes, controller_run_id="manual__c1", triggered_by="ada")


def run_ids() -> tuple[str, str]:
    triggered, cleared = (p.run_id for p in plans() if p.action in (Action.TRIGGERED, Action.CLEARED))
    return triggered, cleared


def by_day(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {pendulum.parse(d["logical_date"]).day: d for d in result["dates"]}


# --- outcome of one date ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger_state", "run_state", "expected"),
    [
        (None, None, PENDING),
        ("running", None, PENDING),
        ("deferred", None, PENDING),
        ("up_for_retry", None, PENDING),
        ("success", None, PENDING),
        ("success", "queued", PENDING),
        ("success", "running", PENDING),
        ("deferred", "success", PENDING),
        ("success", "success", "success"),
        ("success", "failed", "failed"),
        ("skipped", None, CANCELLED),
        ("failed", None, TRIGGER_FAILED),
        ("upstream_failed", None, TRIGGER_FAILED),
        ("removed", None, TRIGGER_FAILED),
    ],
    ids=[
        "trigger task not started",
        "trigger task running",
        "trigger task deferred",
        "trigger task waiting to retry",
        "triggered, run not visible yet",
        "run queued",
        "run running",
        "run done but trigger task still deferred",
        "run succeeded",
        "run failed",
        "trigger task skipped: cancelled",
        "trigger task failed",
        "trigger task upstream failed",
        "trigger task removed",
    ],
)
def test_outcome(trigger_state: str | None, run_state: str | None, expected: str) -> None:
    assert outcome(trigger_state, run_state) == expected


@pytest.mark.parametrize(
    ("trigger_state", "action", "run_state", "expected"),
    [
        ("running", "triggered", "failed", "failed"),
        ("running", "triggered", "success", "success"),
        ("running", "triggered", None, PENDING),
        ("deferred", "triggered", "success", "success"),
        ("queued", "triggered", "running", PENDING),
        ("deferred", "triggered", None, PENDING),
        ("running", "cleared", "success", PENDING),
        ("success", "cleared", "running", PENDING),
    ],
    ids=[
        "new run of a chunk still triggering: failed",
        "new run of a chunk still triggering: done",
        "date of that chunk not triggered yet",
        "new run of a chunk waiting deferred for room: done",
        "new run of a chunk resuming after a wait: still running",
        "date of a waiting chunk not triggered yet",
        "cleared run of a chunk still triggering: its old state means nothing yet",
        "cleared run once its chunk has finished triggering",
    ],
)
def test_live_progress_counts_a_new_run_while_its_chunk_still_triggers(
    trigger_state: str, action: str, run_state: str | None, expected: str
) -> None:
    effective = acted_state(trigger_state, action, run_state)
    assert outcome(effective, run_state) == expected


def test_failed_count_counts_failed_runs_and_failed_triggers_only() -> None:
    outcomes = {"a": "failed", "b": TRIGGER_FAILED, "c": "success", "d": PENDING, "e": CANCELLED}

    assert failed_count(outcomes) == 2


# --- the report ------------------------------------------------------------------------------


def test_every_date_acted_on_succeeded_so_the_backfill_succeeded() -> None:
    triggered, cleared = run_ids()

    result = report({triggered: "success", cleared: "success"})

    assert result["success"] is True
    assert result["counts"] == {
        "dates": 4,
        "triggered": 1,
        "cleared": 1,
        "skipped": 2,
        "cancelled": 0,
        "succeeded": 2,
        "failed": 0,
    }
    assert result["failed_dates"] == []


@pytest.mark.parametrize(
    ("cleared_outcome", "failed_dates"),
    [
        ("failed", ["2024-01-02T00:00:00+00:00"]),
        (TRIGGER_FAILED, ["2024-01-02T00:00:00+00:00"]),
        (PENDING, []),
    ],
    ids=["run failed", "trigger failed", "still pending"],
)
def test_one_date_not_ending_in_success_fails_the_backfill(
    cleared_outcome: str, failed_dates: list[str]
) -> None:
    triggered, cleared = run_ids()

    result = report({triggered: "success", cleared: cleared_outcome})

    assert result["success"] is False
    assert result["failed_dates"] == failed_dates
    assert result["counts"]["failed"] == len(failed_dates)
    assert by_day(result)[2]["state"] == cleared_outcome


def test_a_date_without_an_outcome_is_pending() -> None:
    triggered, _ = run_ids()

    result = report({triggered: "success"})

    assert by_day(result)[2]["state"] == PENDING
    assert result["success"] is False


def test_a_cancelled_date_fails_the_backfill_and_says_why() -> None:
    triggered, cleared = run_ids()

    result = report({triggered: "failed", cleared: CANCELLED})

    assert result["success"] is False
    assert by_day(result)[2]["action"] == "cancelled"
    assert by_day(result)[2]["why"] == "not started: max_failed_dates reached"
    assert result["counts"]["cancelled"] == 1
    assert result["counts"]["cleared"] == 0


def test_a_cancelled_date_counts_as_neither_succeeded_nor_failed() -> None:
    """It keeps its previous run's state in the table, but that run is not part of this backfill."""
    request = replace(REQUEST, reprocess=Reprocess.ALL)
    outcomes = {p.run_id: "success" if p.action is Action.TRIGGERED else CANCELLED for p in plans(request)}

    result = report(outcomes, request)

    assert [(d["action"], d["state"]) for d in result["dates"][1:3]] == [
        ("cancelled", "failed"),
        ("cancelled", "success"),
    ]
    assert (result["counts"]["succeeded"], result["counts"]["failed"]) == (1, 0)
    assert result["failed_dates"] == []


def test_a_cancelled_date_fails_the_backfill_even_if_nothing_else_failed() -> None:
    triggered, cleared = run_ids()

    assert report({triggered: "success", cleared: CANCELLED})["success"] is False


def test_skipped_dates_keep_their_existing_state_and_do_not_count() -> None:
    triggered, cleared = run_ids()

    result = report({triggered: "success", cleared: "success"})

    days = by_day(result)
    assert (days[3]["action"], days[3]["state"]) == ("skipped", "success")
    assert (days[4]["action"], days[4]["state"]) == ("skipped", "running")
    assert days[4]["why"].startswith("in flight")


def test_a_skipped_failed_date_does_not_fail_the_backfill() -> None:
    request = replace(REQUEST, reprocess=Reprocess.MISSING)
    (triggered,) = (p.run_id for p in plans(request) if p.action is Action.TRIGGERED)

    result = report({triggered: "success"}, request)

    assert by_day(result)[2]["state"] == "failed"
    assert result["failed_dates"] == []
    assert result["success"] is True


def test_nothing_to_do_is_a_success() -> None:
    request = replace(REQUEST, reprocess=Reprocess.MISSING)
    only_existing = [p for p in plans(request) if p.action is Action.SKIPPED]

    result = build_report(request, only_existing, {})

    assert result["success"] is True
    assert result["counts"]["dates"] == 3


def test_a_dry_run_succeeds_and_reports_the_planned_actions() -> None:
    request = replace(REQUEST, dry_run=True)

    result = report({}, request)

    assert result["success"] is True
    assert result["dry_run"] is True
    assert [(d["action"], d["state"]) for d in result["dates"]] == [
        ("triggered", None),
        ("cleared", "failed"),
        ("skipped", "success"),
        ("skipped", "running"),
    ]


def test_the_report_says_who_ran_what_and_why() -> None:
    result = report({})

    assert result["dag_id"] == "sales"
    assert result["controller_run_id"] == "manual__c1"
    assert result["triggered_by"] == "ada"
    assert result["reason"] == "outage"
    assert result["request"] == REQUEST.to_dict()


def test_each_date_carries_its_run_id_and_data_interval() -> None:
    result = report({})

    first = result["dates"][0]
    assert first["logical_date"] == "2024-01-01T00:00:00+00:00"
    assert first["run_id"] == "backfill_controller__2024-01-01T00:00:00+00:00"
    assert (first["data_interval_start"], first["data_interval_end"]) == (
        "2024-01-01T00:00:00+00:00",
        "2024-01-02T00:00:00+00:00",
    )


# --- the table -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "dry_run", "verdict"),
    [
        ("success", False, "SUCCESS: 4 dates of sales"),
        ("failed", False, "FAILED: 4 dates of sales"),
        ("success", True, "DRY RUN: 4 dates of sales"),
    ],
    ids=["success", "failed", "dry run"],
)
def test_table_lists_every_date_and_ends_with_a_verdict(outcomes: str, dry_run: bool, verdict: str) -> None:
    request = replace(REQUEST, dry_run=dry_run)
    result = report(dict.fromkeys(run_ids(), outcomes), request)

    lines = render_table(result).splitlines()

    assert lines[0].split() == ["logical_date", "action", "state", "run_id", "why"]
    for day in (1, 2, 3, 4):
        assert any(line.startswith(f"2024-01-0{day}T00:00:00+00:00") for line in lines[1:5])
    assert lines[-1].startswith(verdict)
    assert "triggered 1, cleared 1, skipped 2, cancelled 0" in lines[-1]


def test_table_shows_a_dash_for_no_state() -> None:
    line = render_table(report({}, replace(REQUEST, dry_run=True))).splitlines()[1]

    assert line.split()[:3] == ["2024-01-01T00:00:00+00:00", "triggered", "-"]


def test_table_is_cut_after_the_limit() -> None:
    lines = render_table(report({}), limit=2).splitlines()

    assert len(lines) == 1 + 2 + 2
    assert lines[-2] == "... 2 more dates in the XCom report"
