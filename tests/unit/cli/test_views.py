"""Specification of :mod:`backfill_controller.cli.views`: what ``backfill status`` and ``backfill
list`` print."""

from __future__ import annotations

from typing import Any

from backfill_controller.cli.views import format_list, format_status, list_footer
from backfill_controller.domain.state import Counts


def page_backfill(run_id: str = "manual__1", **changes: Any) -> dict[str, Any]:
    """One backfill as ``GET /backfill-controller/api/backfills[/{run_id}]`` answers it."""
    cells = [
        {
            "logical_date": f"2024-01-0{day}T00:00:00+00:00",
            "run_id": f"backfill__2024-01-0{day}",
            "action": action,
            "state": state,
            "why": why,
            "run_state": state,
            "run_exists": True,
        }
        for day, action, state, why in (
            (1, "triggered", "success", "no run yet"),
            (2, "cleared", "failed", "run failed"),
            (3, "skipped", "success", "run exists (success); reprocess=all re-runs it"),
            (4, "skipped", "failed", "run exists (failed); reprocess=failed or all re-runs it"),
        )
    ]
    tally = Counts(dates=4, acting=2, succeeded=1, failed=1, skipped=2)
    answer = {
        "run_id": run_id,
        "state": "failed",
        "phase": "failed",
        "start_date": "2026-01-01T08:00:00+00:00",
        "end_date": "2026-01-01T08:05:00+00:00",
        "triggered_by": "ada",
        "target_dag_id": "sales",
        "window": {"start_date": "2024-01-01", "end_date": "2024-01-04", "dates": None},
        "reason": "late files",
        "dry_run": False,
        "reprocess": "failed",
        "error": None,
        "planned": True,
        "visible": True,
        "progress": {"dates": 4, "acting": 2, "finished": 2, "counts": {}, "tally": tally.to_dict()},
        "cells": cells,
    }
    return {**answer, **changes}


def test_status_shows_phase_request_counts_and_every_date():
    lines = format_status(page_backfill()).splitlines()
    assert lines[0] == "backfill manual__1: failed"
    header = "\n".join(lines[1 : lines.index("")])
    for part in ("target        sales", "window        2024-01-01..2024-01-04", "reason        late files"):
        assert part in header
    assert "triggered by  ada" in header
    assert "dates         4 dates, 2/2 finished: succeeded 1, failed 1, skipped 2" in header
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == ["logical_date", "action", "state", "run_id", "why"]
    assert table[2].split()[:4] == ["2024-01-02T00:00:00+00:00", "cleared", "failed", "backfill__2024-01-02"]
    assert table[2].endswith("run failed")


def test_status_shows_a_date_left_alone_whose_run_failed_as_failed_and_skipped():
    lines = format_status(page_backfill()).splitlines()

    table = lines[lines.index("") + 1 :]
    assert table[4].split()[:4] == ["2024-01-04T00:00:00+00:00", "skipped", "failed", "backfill__2024-01-04"]
    assert table[3].split()[:3] == ["2024-01-03T00:00:00+00:00", "skipped", "success"]


def test_status_of_a_backfill_before_its_plan_or_of_a_hidden_target():
    queued = format_status(page_backfill(phase="queued", planned=False, cells=[], window={}))
    assert queued.splitlines()[0] == "backfill manual__1: queued" and "logical_date" not in queued
    hidden = format_status(page_backfill(visible=False, planned=False, cells=[], window={}))
    assert "no read access to the target DAG" in hidden and "dates         " not in hidden


def test_list_shows_one_line_per_backfill():
    dry_run = page_backfill(
        "manual__2",
        phase="planned",
        dry_run=True,
        triggered_by=None,
        window={"dates": 2, "first_date": "2024-01-01T00:00:00Z", "last_date": "2024-01-02T00:00:00Z"},
        progress={"dates": 2, "acting": 0, "finished": 0},
    )
    dry_run.pop("cells")  # the list sums backfills up without their dates
    page = {"total": 2, "offset": 0, "backfills": [dry_run, page_backfill()]}
    lines = format_list(page).splitlines()
    assert lines[0].split() == ["run_id", "phase", "target", "window", "finished", "triggered_by"]
    assert lines[1].split() == [
        *("manual__2", "planned", "sales", "2", "dates", "(2024-01-01..2024-01-02)", "2", "planned", "-")
    ]
    assert lines[2].split() == ["manual__1", "failed", "sales", "2024-01-01..2024-01-04", "2/2", "ada"]
    assert format_list({"total": 0, "offset": 0, "backfills": []}) == ""


def test_list_footer_says_what_is_shown_and_how_to_see_more():
    assert list_footer({"total": 3, "offset": 0, "backfills": [{}] * 3}) == "backfills 1-3 of 3"
    assert list_footer({"total": 3, "offset": 5, "backfills": []}) == "no backfills at --offset 5, of 3"


def test_status_shows_the_eta_of_a_running_backfill_and_its_history():
    history = [
        {"action": "pause", "by": "ada", "at": "2026-01-01T08:01:00+00:00", "detail": None},
        {"action": "rerun_failed", "by": "bo", "at": "2026-01-01T09:00:00+00:00", "detail": "manual__2"},
    ]
    eta = {"end": "2026-01-01T08:30:00+00:00", "remaining_seconds": 750.0, "basis": "finished_runs"}
    text = format_status(page_backfill(phase="running", eta=eta, history=history))
    assert "ETA           2026-01-01 08:30:00 UTC (0:12:30 left)" in text
    assert "  2026-01-01 08:01:00  pause by ada" in text
    assert "  2026-01-01 09:00:00  rerun_failed by bo -> manual__2" in text
