"""The Backfills page's list filters (``?dag_id=`` and ``?state=``) keep exactly what it shows.

``state`` is a phase, computed (not stored): :func:`backfill_controller.server.web.list_backfills`
filters on what decides it and reads in full only a backfill that may be cancelling or cancelled. Here
the route's function runs on an in-memory SQLite with Airflow's tables and a handful of
controller runs in every phase; each filtered page must be the unfiltered list's backfills of
that target and phase, in order, with a ``total`` that counts them. No server.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTROLLER_DAG_ID, continuation_run_id
from backfill_controller.domain.controls import Applied, Control
from backfill_controller.domain.state import Phase
from backfill_controller.server import ledger
from backfill_controller.server.ui import target_is
from backfill_controller.server.web import list_backfills
from tests.unit.metadata_rows import DagRun, Rows, database

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def test_the_target_filter_is_sql_on_the_conf_for_sqlite_and_postgresql():
    query = select(DagRun.id).where(target_is("sales"))
    lite = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    pg = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    assert "JSON_EXTRACT(dag_run.conf, '$.\"dag_id\"')" in lite and "= 'sales'" in lite
    assert "dag_run.conf ->> 'dag_id'" in pg and "= 'sales'" in pg


class Metadata(Rows):
    """Controller runs, their backfills' records, and the target runs, by hand."""

    def backfill(
        self,
        run_id: str,
        target: str,
        state: str,
        *,
        planned: bool = True,
        dry_run: bool = False,
        reported: bool = False,
        target_state: str | None = None,
    ) -> None:
        """A one-date backfill; ``target_state``: that of the run it triggered (None: no run)."""
        conf = {"dag_id": target, "dates": ["2024-01-01"], **({"dry_run": True} if dry_run else {})}
        pk = self.run(CONTROLLER_DAG_ID, run_id, state, conf=conf)
        if planned:
            target_run = f"backfill__{run_id}"
            plan = {"logical_date": "2024-01-01T00:00:00+00:00", "run_id": target_run, "action": "triggered"}
            self.record(pk, run_id, conf, [{**plan, "why": "no run yet"}])
            if not dry_run:
                self.chunk(pk, 0, 1)
            if target_state:
                self.run(target, target_run, target_state)
        if reported:
            self.reported(pk)


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    with Session(database()) as session:
        db = Metadata(session, NOW)
        db.backfill("r01", "sales", "queued", planned=False)
        db.backfill("r02", "sales", "running", planned=False)
        db.backfill("r03", "sales", "running", target_state="running")
        db.backfill("r04", "other", "running", dry_run=True)
        db.backfill("r05", "sales", "success", dry_run=True)
        db.backfill("r06", "sales", "success", reported=True, target_state="success")
        db.backfill("r07", "other", "failed", reported=True, target_state="failed")
        db.backfill("r08", "sales", "failed", target_state="failed")  # cancelled
        db.backfill("r09", "sales", "failed", target_state="running")  # cancelling
        db.backfill("r10", "other", "failed", target_state="running")  # cancelling
        db.backfill("r11", "sales", "failed", planned=False)
        db.backfill("r12", "sales", "running", target_state="queued")
        ledger.add(session, "r12", Applied(Control.PAUSE, "ann", NOW))  # paused
        ledger.add(session, "r03", Applied(Control.PAUSE, "ann", NOW))  # paused, then resumed
        ledger.add(session, "r03", Applied(Control.RESUME, "ann", NOW))
        continuation = continuation_run_id("r01", 1)  # not a backfill of its own
        db.run(CONTROLLER_DAG_ID, continuation, "running", conf={"dag_id": "sales"})
        session.commit()
        yield session


def listed(session: Session, readable: set[str], **filters: Any) -> dict[str, Any]:
    return list_backfills(
        session=session,
        user=None,
        readable=readable,
        **{"limit": 200, "offset": 0, "dag_id": None, "state": None, **filters},
    )


READERS = {"reads every DAG": {"sales", "other"}, "cannot read `other`": {"sales"}}


def test_the_backfills_are_in_every_phase_as_each_reader_is_shown_them(session):
    shown = {b["run_id"]: b["phase"] for b in listed(session, READERS["reads every DAG"])["backfills"]}
    assert shown == {
        "r12": "paused",
        "r11": "failed",
        "r10": "cancelling",
        "r09": "cancelling",
        "r08": "cancelled",
        "r07": "failed",
        "r06": "succeeded",
        "r05": "planned",
        "r04": "planned",
        "r03": "running",
        "r02": "planning",
        "r01": "queued",
    }
    # Without read rights on the target a reader is shown no plan: the filter follows what it shows.
    hidden = {b["run_id"]: b["phase"] for b in listed(session, READERS["cannot read `other`"])["backfills"]}
    assert (hidden["r04"], hidden["r10"]) == ("planning", "failed")


FILTERS = [(dag_id, state) for dag_id in (None, "sales") for state in (None, *Phase)]
FILTER_IDS = [f"{dag_id or 'any DAG'}-{state.value if state else 'any phase'}" for dag_id, state in FILTERS]


@pytest.mark.parametrize("reader", list(READERS), ids=list(READERS))
@pytest.mark.parametrize(("dag_id", "state"), FILTERS, ids=FILTER_IDS)
def test_a_filtered_list_is_the_list_of_what_matches_and_pages_alike(session, reader, dag_id, state):
    readable = READERS[reader]
    wanted = [
        b["run_id"]
        for b in listed(session, readable)["backfills"]
        if (state is None or b["phase"] == state) and (dag_id is None or b["target_dag_id"] == dag_id)
    ]
    assert wanted  # every filter here keeps some backfills: none passes by keeping nothing
    for limit, offset in ((200, 0), (1, 1), (2, 1)):
        page = listed(session, readable, dag_id=dag_id, state=state, limit=limit, offset=offset)
        assert [b["run_id"] for b in page["backfills"]] == wanted[offset : offset + limit]
        assert page["total"] == len(wanted)


def test_a_dag_without_backfills_lists_none(session):
    for state in (None, Phase.FAILED):
        page = listed(session, READERS["reads every DAG"], dag_id="sales_pipeline", state=state)
        assert (page["total"], page["backfills"]) == (0, [])
