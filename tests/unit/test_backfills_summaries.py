"""The Backfills page's list sums backfills up without their cells; the detail adds the cells.

Both say the same about a backfill (phase, counts, estimated end); only the detail lists its
dates. The route functions run on an in-memory SQLite with Airflow's tables and backfills written
by hand, run times relative to the real clock (the estimate reads it): the tests check the
estimated end, which stays put while the runs keep their pace, not the time left. No server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import HTTPException
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.plan import feeding
from backfill_controller.server.ui import settle
from backfill_controller.server.web import get_backfill, keep_report, list_backfills
from tests.unit.metadata_rows import DagRun, Rows, database

#: When the backfills were written (the fixture sets it).
NOW = datetime.now(UTC)
TARGET = "sales"
READABLE = {TARGET}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


class Metadata(Rows):
    """Backfills of :data:`TARGET`, and its own runs."""

    def backfill(
        self, run_id: str, state: str, days: list[str], runs: dict[str, tuple[str, float, float | None]]
    ) -> None:
        """A backfill of ``days`` triggered by one chunk; ``runs``: ``{day: (state, started s ago,
        ended s ago)}`` of the target runs it has created (the other days are not started)."""
        conf = {"dag_id": TARGET, "dates": days}
        pk = self.run(CONTROLLER_DAG_ID, run_id, state, start_date=ago(3600), conf=conf)
        plans = [
            {"logical_date": f"{day}T00:00:00+00:00", "run_id": f"bf__{run_id}__{day}", "action": "triggered"}
            for day in days
        ]
        execution = {"target_dag_id": TARGET, "feeding": feeding(2, None).to_dict(), "total": len(days)}
        self.record(pk, run_id, conf, [{**p, "why": "no run yet"} for p in plans], execution)
        self.chunk(pk, 0, len(runs) if state == "running" else len(days))
        for day, (run_state, started, ended) in runs.items():
            end = None if ended is None else ago(ended)
            self.run(TARGET, f"bf__{run_id}__{day}", run_state, start_date=ago(started), end_date=end)


DAYS = [f"2024-03-{day:02d}" for day in range(1, 9)]


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    global NOW
    NOW = datetime.now(UTC)
    with Session(database()) as session:
        db = Metadata(session, NOW)
        # The target's own history: runs of 60 s.
        for k in range(3):
            start, end = ago(10_000 + 100 * k), ago(9_940 + 100 * k)
            db.run(TARGET, f"scheduled__{k}", "success", start_date=start, end_date=end)
        # 8 dates of 100 s, 2 at a time: 2 finished, 2 half done, 4 not started.
        db.backfill(
            "b1_running",
            "running",
            DAYS,
            {
                DAYS[0]: ("success", 150, 50),
                DAYS[1]: ("failed", 150, 50),
                DAYS[2]: ("running", 50, None),
                DAYS[3]: ("running", 50, None),
            },
        )
        # None of its runs has finished yet: the target's history stands in.
        db.backfill("b2_starting", "running", DAYS[:3], {DAYS[0]: ("running", 30, None)})
        db.backfill("b3_done", "success", DAYS[:2], {d: ("success", 500, 400) for d in DAYS[:2]})
        session.commit()
        yield session


def listed(session: Session) -> dict[str, dict[str, Any]]:
    page = list_backfills(
        session=session, user=None, readable=READABLE, limit=50, offset=0, dag_id=None, state=None
    )
    return {b["run_id"]: b for b in page["backfills"]}


def test_the_list_has_no_cells_and_the_detail_is_the_list_entry_with_its_cells(session):
    summaries = listed(session)

    assert list(summaries) == ["b3_done", "b2_starting", "b1_running"]
    for run_id, summary in summaries.items():
        detail = get_backfill(run_id=run_id, session=session, user=None, readable=READABLE)
        assert "cells" not in summary
        cells = detail.pop("cells")
        assert [c["logical_date"] for c in cells] == sorted(c["logical_date"] for c in cells)
        assert (detail.pop("cells_total"), detail.pop("cells_offset")) == (len(cells), 0)
        assert {k: v for k, v in detail.items() if k != "eta"} == {
            k: v for k, v in summary.items() if k != "eta"
        }
        assert (detail["eta"] is None) == (summary["eta"] is None)
        assert detail["progress"]["counts"] == {
            state: sum(1 for c in cells if c["state"] == state) for state in {c["state"] for c in cells}
        }


def test_the_detail_answers_its_cells_a_page_at_a_time(session):
    whole = get_backfill(run_id="b1_running", session=session, user=None, readable=READABLE)
    page = get_backfill(
        run_id="b1_running", session=session, user=None, readable=READABLE, cells_offset=3, cells_limit=2
    )

    assert page["cells"] == whole["cells"][3:5] and page["cells_total"] == whole["cells_total"] == 8
    assert page["progress"] == whole["progress"]


def test_the_window_names_the_first_and_last_date(session):
    window = listed(session)["b1_running"]["window"]

    assert window == {
        "start_date": None,
        "end_date": None,
        "dates": 8,
        "first_date": "2024-03-01T00:00:00+00:00",
        "last_date": "2024-03-08T00:00:00+00:00",
    }


def test_a_running_backfill_has_an_estimated_end_from_its_finished_runs(session, monkeypatch):
    monkeypatch.setattr(
        "backfill_controller.server.ui.now", lambda: NOW
    )  # estimated as the rows were written
    summary = listed(session)["b1_running"]

    eta = summary["eta"]

    # D = 100 s and 3 runs' worth done in 150 s on 2 slots: both slots free 50 s after the
    # backfills were written, then 4 dates two to a slot: 250 s after.
    assert summary["phase"] == "running" and eta["basis"] == "finished_runs"
    assert eta["remaining_seconds"] == pytest.approx(250)
    assert datetime.fromisoformat(eta["end"]) == NOW + timedelta(seconds=250)


def test_before_any_run_finished_the_estimate_takes_the_targets_recent_runs(session, monkeypatch):
    monkeypatch.setattr("backfill_controller.server.ui.now", lambda: NOW)
    eta = listed(session)["b2_starting"]["eta"]

    # D = 80 s, the mean of the target's successful runs (3 of 60 s, 3 of 100 s): the running
    # run ends 50 s after the backfills were written, then the 2 dates left run one on each
    # slot, the later till 50 + 80 s after.
    assert eta["basis"] == "recent_runs"
    assert datetime.fromisoformat(eta["end"]) == NOW + timedelta(seconds=130)


def test_a_finished_backfill_has_no_estimate(session):
    summary = listed(session)["b3_done"]

    assert summary["phase"] == "succeeded" and summary["eta"] is None


def test_a_reader_who_may_not_read_the_target_gets_no_estimate(session):
    page = list_backfills(
        session=session, user=None, readable=set(), limit=50, offset=0, dag_id=None, state=None
    )

    assert all(b["eta"] is None and b["progress"]["dates"] == 0 for b in page["backfills"])


@pytest.fixture
def ended() -> Iterator[Session]:
    """A backfill whose report is running: 2 dates succeeded, 1 failed."""
    with Session(database()) as session:
        db = Metadata(session, NOW)
        runs = {DAYS[0]: ("success", 500, 400), DAYS[1]: ("failed", 500, 400), DAYS[2]: ("success", 300, 200)}
        db.backfill("b4_ended", "running", DAYS[:3], runs)
        db.reported(head(session, "b4_ended").id)
        session.commit()
        yield session


def head(session: Session, run_id: str) -> DagRun:
    return session.scalars(select(DagRun).where(DagRun.run_id == run_id)).one()


def end_run(session: Session, run_id: str, state: str) -> None:
    session.execute(update(DagRun.__table__).where(DagRun.run_id == run_id).values(state=state))


def test_an_ended_backfill_keeps_the_outcome_its_report_saw(ended):
    live = listed(ended)["b4_ended"]
    assert settle(ended, head(ended, "b4_ended")) is not None
    end_run(ended, "b4_ended", "failed")
    # A date re-run by hand afterwards does not change what the backfill did.
    ended.execute(
        update(DagRun.__table__).where(DagRun.run_id == f"bf__b4_ended__{DAYS[1]}").values(state="success")
    )

    summary = listed(ended)["b4_ended"]
    detail = get_backfill(run_id="b4_ended", session=ended, user=None, readable=READABLE)

    assert summary["progress"] == live["progress"] == detail["progress"]
    assert summary["progress"]["tally"]["failed"] == 1 and summary["phase"] == "failed"
    assert {k: v for k, v in detail.items() if not k.startswith("cells")} == summary
    assert [c["state"] for c in detail["cells"]] == ["success", "failed", "success"]


def test_the_list_reads_no_date_of_an_ended_backfill(ended, monkeypatch):
    settle(ended, head(ended, "b4_ended"))
    end_run(ended, "b4_ended", "failed")

    def no_dates(*args):
        raise AssertionError("the list read an ended backfill's dates")

    monkeypatch.setattr("backfill_controller.server.ledger.segment_plans", no_dates)
    assert listed(ended)["b4_ended"]["progress"]["tally"]["failed"] == 1


def test_a_cleared_backfill_reads_its_dates_live_again(ended):
    settle(ended, head(ended, "b4_ended"))
    end_run(ended, "b4_ended", "failed")
    ended.execute(
        update(DagRun.__table__).where(DagRun.run_id == f"bf__b4_ended__{DAYS[1]}").values(state="success")
    )
    ended.execute(update(DagRun.__table__).where(DagRun.run_id == "b4_ended").values(clear_number=1))

    assert listed(ended)["b4_ended"]["progress"]["tally"]["failed"] == 0


def test_a_reader_who_may_not_read_the_target_sees_no_outcome(ended):
    settle(ended, head(ended, "b4_ended"))
    end_run(ended, "b4_ended", "failed")
    page = list_backfills(
        session=ended, user=None, readable=set(), limit=50, offset=0, dag_id=None, state=None
    )

    assert (
        page["backfills"][0]["progress"]["dates"] == 0
        and page["backfills"][0]["window"]["first_date"] is None
    )


def test_nothing_is_settled_while_dates_are_still_to_start(session):
    assert settle(session, head(session, "b1_running")) is None
    assert listed(session)["b1_running"]["phase"] == "running"


def test_nothing_is_settled_while_a_date_still_runs(ended):
    ended.execute(
        update(DagRun.__table__).where(DagRun.run_id == f"bf__b4_ended__{DAYS[2]}").values(state="running")
    )

    assert settle(ended, head(ended, "b4_ended")) is None


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


def test_only_the_controllers_account_records_how_a_backfill_ended(ended, monkeypatch):
    monkeypatch.setattr("backfill_controller.server.access.service_account", lambda: "airflow_api_user")
    body = {"report": {"success": False}}

    with pytest.raises(HTTPException) as refused:
        keep_report(run_id="b4_ended", body=body, session=ended, caller=Named("mallory"))
    recorded = keep_report(run_id="b4_ended", body=body, session=ended, caller=Named("airflow_api_user"))

    assert refused.value.status_code == 403
    assert recorded["settled"]["progress"]["tally"]["succeeded"] == 2


def test_a_running_backfill_reads_the_runs_of_the_segments_begun_and_of_the_dates_left_alone():
    """A segment whose run has not planned yet knows no run ids: its dates are pending whatever
    their runs are, so only its dates left alone are read (at 100,000 dates: a few segments)."""
    from backfill_controller.domain.state import SegmentFacts
    from backfill_controller.server.ui import _runs_to_read

    plans = [
        {"logical_date": "2024-01-01", "run_id": "a", "action": "triggered"},
        {"logical_date": "2024-01-02", "run_id": "b", "action": "skipped"},
        {"logical_date": "2024-01-03", "run_id": "c", "action": "cleared"},
    ]
    begun = SegmentFacts(plans, ["a", "c"], 1, {}, {}, {}, finished=False)
    not_begun = SegmentFacts(plans, [], 1, {}, {}, {}, finished=False)
    assert list(_runs_to_read(begun)) == ["a", "b", "c"]
    assert list(_runs_to_read(not_begun)) == ["b"]
