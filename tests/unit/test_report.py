"""Specification of the result: how each date ended, the counts, and when a backfill succeeded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pendulum
import pytest

from backfill_controller.contract import TARGET_RUN_PREFIX
from backfill_controller.domain.plan import Action, DatePlan, ExistingRun, decide
from backfill_controller.domain.report import build_report, render_table
from backfill_controller.domain.request import BackfillRequest, Reprocess
from backfill_controller.domain.schedule import ScheduledDate
from backfill_controller.domain.state import (
    ChunkRecord,
    DateOutcome,
    Event,
    EventKind,
    SegmentFacts,
    segment_dates,
)

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


def ended(
    runs: dict[str, str | None],
    request: BackfillRequest = REQUEST,
    *,
    chunks: dict[int, str] | None = None,
    records: dict[int, ChunkRecord] | None = None,
) -> list[DateOutcome]:
    """Where each date ended, as the report task reads it: one date per chunk, every chunk done
    (``success`` unless ``chunks`` says otherwise), the target runs in ``runs``."""
    planned = plans(request)
    run_ids = [p.run_id for p in planned if p.action in (Action.TRIGGERED, Action.CLEARED)]
    facts = SegmentFacts(
        plans=[p.to_dict() for p in planned],
        run_ids=run_ids,
        chunk_size=1,
        chunk_states={i: (chunks or {}).get(i, "success") for i in range(len(run_ids))},
        records=records or {},
        run_states=runs,
        finished=True,
    )
    return segment_dates(facts)


def report(runs: dict[str, str | None], request: BackfillRequest = REQUEST, **given: Any) -> dict[str, Any]:
    return build_report(
        request,
        plans(request),
        ended(runs, request, **given),
        controller_run_id="manual__c1",
        triggered_by="ada",
    )


def run_ids() -> tuple[str, str]:
    triggered, cleared = (p.run_id for p in plans() if p.action in (Action.TRIGGERED, Action.CLEARED))
    return triggered, cleared


def by_day(result: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {pendulum.parse(d["logical_date"]).day: d for d in result["dates"]}


# --- the report ------------------------------------------------------------------------------

BUDGET_SPENT = "max_failed_dates reached (1 dates failed)"


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
        "adopted": 0,
        "succeeded": 2,
        "failed": 0,
    }
    assert result["failed_dates"] == []
    assert result["unfinished_dates"] == []


REFUSED = "Airflow refused the run (HTTP 400): Dag with dag_id 'sales' does not allow operator-triggered runs"


@pytest.mark.parametrize(
    ("cleared_run", "events", "state", "failed", "unfinished"),
    [
        ("failed", {}, "failed", ["2024-01-02T00:00:00+00:00"], []),
        (
            "failed",
            {"scheduled__02": Event(EventKind.REFUSED, REFUSED)},
            "trigger_failed",
            ["2024-01-02T00:00:00+00:00"],
            [],
        ),
        ("running", {}, "running", [], ["2024-01-02T00:00:00+00:00"]),
        (None, {}, "pending", [], ["2024-01-02T00:00:00+00:00"]),
    ],
    ids=["run failed", "trigger failed", "still running", "no run seen"],
)
def test_one_date_not_ending_in_success_fails_the_backfill(
    cleared_run: str | None, events: dict[str, Event], state: str, failed: list[str], unfinished: list[str]
) -> None:
    triggered, cleared = run_ids()

    result = report({triggered: "success", cleared: cleared_run}, records={1: ChunkRecord(1, 1, events)})

    assert result["success"] is False
    assert result["failed_dates"] == failed
    assert result["unfinished_dates"] == unfinished
    assert result["counts"]["failed"] == len(failed)
    assert by_day(result)[2]["state"] == state


def test_a_refused_date_carries_airflows_message() -> None:
    triggered, cleared = run_ids()

    result = report(
        {triggered: "success", cleared: "failed"},
        records={1: ChunkRecord(1, 1, {cleared: Event(EventKind.REFUSED, REFUSED)})},
    )

    assert (by_day(result)[2]["state"], by_day(result)[2]["why"]) == ("trigger_failed", REFUSED)


def test_a_cancelled_date_fails_the_backfill_and_says_why() -> None:
    triggered, cleared = run_ids()

    result = report(
        {triggered: "failed", cleared: "failed"},
        chunks={1: "skipped"},
        records={1: ChunkRecord(1, 0, stopped=BUDGET_SPENT)},
    )

    assert result["success"] is False
    assert (by_day(result)[2]["action"], by_day(result)[2]["state"]) == ("cancelled", "cancelled")
    assert by_day(result)[2]["why"] == f"not started: {BUDGET_SPENT}"
    assert result["counts"]["cancelled"] == 1
    assert result["counts"]["cleared"] == 0
    assert result["failed_dates"] == ["2024-01-01T00:00:00+00:00"]


def test_a_cancelled_date_counts_as_neither_succeeded_nor_failed() -> None:
    """Its previous run's state is shown as its run_state, but that run is not part of this backfill."""
    request = replace(REQUEST, reprocess=Reprocess.ALL)
    (triggered,) = (p.run_id for p in plans(request) if p.action is Action.TRIGGERED)

    result = report(
        {triggered: "success", "scheduled__02": "failed", "scheduled__03": "success"},
        request,
        chunks={1: "skipped", 2: "skipped"},
    )

    assert [(d["action"], d["state"], d["run_state"]) for d in result["dates"][1:3]] == [
        ("cancelled", "cancelled", "failed"),
        ("cancelled", "cancelled", "success"),
    ]
    assert (result["counts"]["succeeded"], result["counts"]["failed"]) == (1, 0)
    assert result["failed_dates"] == []


def test_a_cancelled_date_fails_the_backfill_even_if_nothing_else_failed() -> None:
    triggered, _ = run_ids()

    assert report({triggered: "success"}, chunks={1: "skipped"})["success"] is False


def test_a_date_another_run_took_first_ends_as_that_run() -> None:
    triggered, _ = run_ids()
    why = "manual__other had this logical date first; its outcome is this date's"
    adopted = {triggered: Event(EventKind.ADOPTED, why, "manual__other")}

    result = report(
        {"manual__other": "success", "scheduled__02": "success"}, records={0: ChunkRecord(0, 1, adopted)}
    )

    first = by_day(result)[1]
    assert (first["action"], first["state"], first["run_id"]) == ("adopted", "success", "manual__other")
    assert first["planned_run_id"] == triggered and first["why"] == why
    assert first["data_interval_start"] == "2024-01-01T00:00:00+00:00"
    assert (result["counts"]["adopted"], result["counts"]["triggered"]) == (1, 0)
    assert result["success"] is True


def test_a_date_left_alone_reads_the_state_of_its_run() -> None:
    triggered, cleared = run_ids()

    result = report({triggered: "success", cleared: "success"})

    days = by_day(result)
    assert (days[3]["action"], days[3]["state"], days[3]["run_state"]) == ("skipped", "success", "success")
    assert (days[4]["action"], days[4]["state"], days[4]["run_state"]) == ("skipped", "running", "running")
    assert days[4]["why"].startswith("in flight")


def test_a_date_left_alone_still_running_leaves_nothing_unfinished() -> None:
    triggered, cleared = run_ids()

    result = report({triggered: "success", cleared: "success"})

    assert result["unfinished_dates"] == []
    assert result["success"] is True


def test_a_date_left_alone_does_not_fail_the_backfill() -> None:
    request = replace(REQUEST, reprocess=Reprocess.MISSING)
    (triggered,) = (p.run_id for p in plans(request) if p.action is Action.TRIGGERED)

    result = report({triggered: "success"}, request)

    second = by_day(result)[2]
    assert (second["action"], second["state"], second["run_state"]) == ("skipped", "failed", "failed")
    assert second["why"] == "run exists (failed); reprocess=failed or all re-runs it"
    assert result["failed_dates"] == []
    assert (result["counts"]["failed"], result["counts"]["succeeded"], result["counts"]["skipped"]) == (
        0,
        1,
        3,
    )
    assert result["success"] is True
    assert result["window_complete"] is False


@pytest.mark.parametrize(
    ("cleared_run", "left_alone_run", "success", "whole"),
    [
        ("success", "success", True, True),
        ("success", None, True, False),
        ("success", "failed", True, False),
        ("failed", "success", False, False),
    ],
    ids=[
        "every date succeeded, those left alone too",
        "a date left alone is still running",
        "a date left alone failed",
        "a date acted on failed",
    ],
)
def test_the_result_says_whether_the_window_is_now_whole(
    cleared_run: str, left_alone_run: str | None, success: bool, whole: bool
) -> None:
    """Jan 3 was left alone with a successful run; Jan 4 was left alone running (as planned,
    unless the run is read again: ``left_alone_run``)."""
    triggered, cleared = run_ids()
    runs = {triggered: "success", cleared: cleared_run}

    result = report({**runs, "scheduled__04": left_alone_run} if left_alone_run else runs)

    assert (result["success"], result["window_complete"]) == (success, whole)


def test_a_dry_run_says_whether_every_date_already_has_a_successful_run() -> None:
    request = replace(REQUEST, dry_run=True, reprocess=Reprocess.ALL)
    planned = plans(request)
    with_runs = [p for p in planned if p.existing_state == "success"]

    assert build_report(request, planned, None)["window_complete"] is False
    assert build_report(request, with_runs, None)["window_complete"] is True


def test_nothing_to_do_is_a_success() -> None:
    request = replace(REQUEST, reprocess=Reprocess.MISSING)
    only_existing = [p for p in plans(request) if p.action is Action.SKIPPED]
    dates = segment_dates(
        SegmentFacts([p.to_dict() for p in only_existing], [], 1, {}, {}, {}, finished=True)
    )

    result = build_report(request, only_existing, dates)

    assert result["success"] is True
    assert result["counts"]["dates"] == 3


def test_a_dry_run_succeeds_and_reports_the_planned_actions() -> None:
    request = replace(REQUEST, dry_run=True)

    result = build_report(request, plans(request), None)

    assert result["success"] is True
    assert result["dry_run"] is True
    assert [(d["action"], d["state"], d["run_state"]) for d in result["dates"]] == [
        ("triggered", "planned", None),
        ("cleared", "planned", "failed"),
        ("skipped", "success", "success"),
        ("skipped", "running", "running"),
    ]
    assert result["unfinished_dates"] == []
    assert result["window_complete"] is False


def test_a_dry_run_ignores_any_outcomes_given() -> None:
    request = replace(REQUEST, dry_run=True)

    result = report(dict.fromkeys(run_ids(), "failed"), request)

    assert [d["state"] for d in result["dates"]] == ["planned", "planned", "success", "running"]
    assert result["success"] is True


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
    assert first["run_id"] == f"{TARGET_RUN_PREFIX}2024-01-01T00:00:00+00:00"
    assert first["planned_run_id"] == first["run_id"]
    assert (first["data_interval_start"], first["data_interval_end"]) == (
        "2024-01-01T00:00:00+00:00",
        "2024-01-02T00:00:00+00:00",
    )


def test_a_task_subset_date_names_the_tasks_it_clears() -> None:
    planned = plans()
    subset = [
        replace(p, task_ids=("load", ("split", 2))) if p.action is Action.CLEARED else p for p in planned
    ]

    result = build_report(REQUEST, subset, ended({}))

    assert by_day(result)[2]["task_ids"] == ["load", "split[2]"]
    assert by_day(result)[1]["task_ids"] is None


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
    assert lines[-2].startswith(verdict)
    assert "triggered 1, cleared 1, skipped 2, cancelled 0" in lines[-2]
    assert lines[-1] == "window: some dates have no successful run (see their state)"


def test_table_shows_a_date_left_alone_whose_run_failed_as_failed() -> None:
    request = replace(REQUEST, reprocess=Reprocess.MISSING)
    (triggered,) = (p.run_id for p in plans(request) if p.action is Action.TRIGGERED)

    lines = render_table(report({triggered: "success"}, request)).splitlines()

    assert lines[2].split()[:4] == ["2024-01-02T00:00:00+00:00", "skipped", "failed", "scheduled__02"]
    assert lines[-2].startswith("SUCCESS: 4 dates of sales")


def test_table_says_when_every_date_of_the_window_has_a_successful_run() -> None:
    triggered, cleared = run_ids()

    result = report({triggered: "success", cleared: "success", "scheduled__04": "success"})

    assert render_table(result).splitlines()[-1] == "window: every date has a successful run"


def test_table_of_a_result_without_the_window_says_nothing_of_it() -> None:
    result = report({})
    del result["window_complete"]

    assert render_table(result).splitlines()[-1].startswith("FAILED: 4 dates of sales")


def test_table_shows_a_dry_runs_dates_as_planned() -> None:
    line = render_table(report({}, replace(REQUEST, dry_run=True))).splitlines()[1]

    assert line.split()[:3] == ["2024-01-01T00:00:00+00:00", "triggered", "planned"]


def test_table_shows_a_dash_for_no_state() -> None:
    result = report({})
    result["dates"][0]["state"] = None

    line = render_table(result).splitlines()[1]

    assert line.split()[:3] == ["2024-01-01T00:00:00+00:00", "triggered", "-"]


def test_table_is_cut_after_the_limit() -> None:
    lines = render_table(report({}), limit=2).splitlines()

    assert len(lines) == 1 + 2 + 3
    assert lines[-3] == "... 2 more dates in the XCom report"
