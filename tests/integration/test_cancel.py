"""Cancelling a backfill stops all of it at once, on SQLite and PostgreSQL alike.

The cancel happens inside the request that marks the controller run failed, in its own
transaction (the PATCH's duration is recorded as a figure; `make bench` is where speed is judged):
no date starts afterwards in any segment, and nothing is left queued.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text
from test_controller import continuation_of, day_runs, wait_for_a_deferred_trigger

from backfill_controller.contract import CONTROLLER_DAG_ID, SEGMENT_MARK
from backfill_controller.domain.airflow_states import OPEN_RUN

CAPPED = "bf_capped"  # holds its runs back itself (max_active_runs 2): the backfill keeps some queued


def cancel(airflow, run_id: str) -> float:
    """Mark the controller run failed; seconds the PATCH took (with its retries while SQLite is
    locked)."""
    began = time.monotonic()
    airflow.mark_failed(CONTROLLER_DAG_ID, run_id)
    return time.monotonic() - began


def settled(airflow, first: str, last: str, timeout: float = 180) -> dict[str, dict]:
    """The target's runs once none is open, and after 10 more seconds in which nothing new appears."""
    deadline = time.monotonic() + timeout
    while any(r["state"] in OPEN_RUN for r in day_runs(airflow, CAPPED, first, last).values()):
        assert time.monotonic() < deadline, "runs of the cancelled backfill are still open"
        time.sleep(1)
    before = day_runs(airflow, CAPPED, first, last)
    time.sleep(10)
    after = day_runs(airflow, CAPPED, first, last)
    assert sorted(after) == sorted(before), "a date started after the cancel"
    return after


def test_a_cancel_fails_the_queued_runs(airflow, figures):
    first, last = "2024-06-01", "2024-06-14"  # more than the window (10): the feeder defers
    run_id = airflow.trigger(
        CONTROLLER_DAG_ID, {"dag_id": CAPPED, "start_date": first, "end_date": last, "max_active_runs": 2}
    )
    wait_for_a_deferred_trigger(airflow, run_id)
    seconds = cancel(airflow, run_id)
    runs = settled(airflow, first, last)
    never_started = [r for r in runs.values() if not r.get("start_date")]
    ok = bool(never_started) and all(r["state"] == "failed" for r in never_started)
    figures.fault(f"backfill cancelled with queued runs on {airflow.backend} (PATCH {seconds:.2f} s)", ok)
    assert never_started and all(r["state"] == "failed" for r in never_started)
    assert len(runs) < 14


def test_a_cancel_stops_every_segment(airflow, figures):
    first, last = "2024-06-15", "2024-06-24"
    conf = {"dag_id": CAPPED, "start_date": first, "end_date": last, "max_active_runs": 2, "segment_size": 3}
    head = airflow.trigger(CONTROLLER_DAG_ID, conf)
    deadline = time.monotonic() + 300
    while True:  # the first continuation has started triggering its dates
        runs = day_runs(airflow, CAPPED, first, last)
        if len(runs) > 3:
            break
        assert time.monotonic() < deadline, runs
        time.sleep(1)
    segment = continuation_of(airflow, head, 1)
    seconds = cancel(airflow, head)
    assert airflow.run_state(CONTROLLER_DAG_ID, segment) == "failed"
    runs = settled(airflow, first, last)
    controller = airflow._json("GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns", params={"limit": 100})[
        "dag_runs"
    ]
    segments = [r["dag_run_id"] for r in controller if r["dag_run_id"].startswith(head + SEGMENT_MARK)]
    ok = segments == [segment] and len(runs) <= 6
    figures.fault(
        f"segmented backfill cancelled on {airflow.backend} (PATCH {seconds:.2f} s): nothing starts after",
        ok,
    )
    assert segments == [segment]  # the next segment never started
    assert len(runs) <= 6  # nothing beyond the running segment's dates


@pytest.mark.backend("postgres")
def test_a_cancel_waits_for_a_scheduler_holding_the_run_and_never_deadlocks_with_it(airflow):
    """The scheduler locks the runs it examines, then writes their task instances. A cancel takes
    the run's lock before it writes any task instance of it, so it waits for the scheduler instead
    of holding task instances the scheduler then waits for (PostgreSQL would abort one of the two)."""
    run_id = airflow.trigger(CONTROLLER_DAG_ID, {"dag_id": CAPPED, "dates": ["2024-07-01"]})
    engine = create_engine(airflow.sql_alchemy_conn)
    where = "dag_id = :dag_id AND run_id = :run_id"
    keys = {"dag_id": CONTROLLER_DAG_ID, "run_id": run_id}
    with engine.connect() as scheduler, ThreadPoolExecutor(1) as pool:
        scheduler.execute(text(f"SELECT id FROM dag_run WHERE {where} FOR UPDATE"), keys)
        path = f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}"
        patch = pool.submit(airflow.api, "PATCH", path, json={"state": "failed"})
        time.sleep(3)  # the PATCH has read the run by now, and waits for it
        scheduler.execute(text(f"SELECT id FROM task_instance WHERE {where} FOR UPDATE"), keys)
        scheduler.commit()
        answer = patch.result(timeout=60)
    engine.dispose()
    assert answer.status_code == 200, answer.text
    assert airflow.run_state(CONTROLLER_DAG_ID, run_id) == "failed"
