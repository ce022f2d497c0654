"""Backfills side by side: overlapping ones never run a date twice; a backfill can be cancelled.

Target ``bf_slow`` (a 20-second task, then ``done``) keeps the first backfill busy long enough
for the others to meet it.
"""

from __future__ import annotations

import time

import pytest
from test_controller import TIMEOUT, Outcome, day_runs, wait_for_a_deferred_trigger

from backfill_controller.contract import CONTROLLER_DAG_ID, Task
from backfill_controller.domain.airflow_states import OPEN_RUN

pytestmark = pytest.mark.backend("postgres")

SLOW = "bf_slow"


def wait_for_task(airflow, run_id: str, task_id: str, state: str = "success", timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while airflow.task_states(CONTROLLER_DAG_ID, run_id).get(task_id) != state:
        assert time.monotonic() < deadline, f"{task_id} of {run_id} never reached {state}"
        time.sleep(1)


def outcome(airflow, run_id: str) -> Outcome:
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT)
    return Outcome(run_id, state, airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT))


@pytest.fixture(scope="module")
def side_by_side(airflow):
    first = airflow.trigger(
        CONTROLLER_DAG_ID, {"dag_id": SLOW, "start_date": "2024-02-01", "end_date": "2024-02-04"}
    )
    wait_for_task(airflow, first, Task.PLAN)
    overlapping = airflow.trigger(
        CONTROLLER_DAG_ID, {"dag_id": SLOW, "start_date": "2024-02-03", "end_date": "2024-02-06"}
    )
    waiting = airflow.trigger(
        CONTROLLER_DAG_ID, {"dag_id": SLOW, "dates": ["2024-02-04", "2024-02-05"], "on_overlap": "wait"}
    )
    elsewhere = airflow.trigger(
        CONTROLLER_DAG_ID, {"dag_id": SLOW, "start_date": "2024-02-10", "end_date": "2024-02-11"}
    )
    cancelled = airflow.trigger(
        CONTROLLER_DAG_ID,
        {"dag_id": SLOW, "start_date": "2024-03-01", "end_date": "2024-03-08", "max_active_runs": 2},
    )
    deadline = time.monotonic() + 300
    while not day_runs(airflow, SLOW, "2024-03-01", "2024-03-08"):
        assert time.monotonic() < deadline, "the backfill to cancel never started"
        time.sleep(1)
    resp = airflow.api(
        "PATCH", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{cancelled}", json={"state": "failed"}
    )
    assert resp.status_code == 200, resp.text
    return {
        "first": outcome(airflow, first),
        "overlapping": outcome(airflow, overlapping),
        "waiting": outcome(airflow, waiting),
        "elsewhere": outcome(airflow, elsewhere),
        "cancelled": cancelled,
    }


def test_an_overlapping_backfill_is_refused_naming_the_other(side_by_side):
    out = side_by_side["overlapping"]
    assert out.state == "failed"
    assert "on_overlap" in out.report["error"] and side_by_side["first"].run_id in out.report["error"]


def test_an_overlapping_backfill_can_wait_and_then_runs_only_what_is_left(airflow, side_by_side):
    out = side_by_side["waiting"]
    assert out.state == "success"
    assert out.dates(action="skipped") == ["2024-02-04"]  # done by the first backfill meanwhile
    assert out.dates(action="triggered") == ["2024-02-05"]


def test_no_date_is_run_by_two_backfills(airflow, side_by_side, figures):
    runs = day_runs(airflow, SLOW, "2024-02-01", "2024-02-11")
    expected = {f"2024-02-0{d}" for d in range(1, 6)} | {"2024-02-10", "2024-02-11"}
    per_date = {}
    for day, run in runs.items():
        tis = airflow._json("GET", f"/api/v2/dags/{SLOW}/dagRuns/{run['dag_run_id']}/taskInstances")
        per_date[day] = max(t["try_number"] for t in tis["task_instances"])
    figures.runs(expected, per_date)
    figures.fault("four backfills of one DAG at once, two overlapping", set(runs) == expected)
    assert sorted(runs) == [f"2024-02-0{d}" for d in range(1, 6)] + ["2024-02-10", "2024-02-11"]
    for day in runs:
        tis = airflow._json("GET", f"/api/v2/dags/{SLOW}/dagRuns/{runs[day]['dag_run_id']}/taskInstances")
        assert {t["try_number"] for t in tis["task_instances"]} == {1}, day


def test_backfills_of_other_dates_run_side_by_side(airflow, side_by_side):
    first, elsewhere = side_by_side["first"], side_by_side["elsewhere"]
    assert first.state == elsewhere.state == "success"
    a = airflow._json("GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{first.run_id}")
    b = airflow._json("GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{elsewhere.run_id}")
    assert b["start_date"] < a["end_date"] and a["start_date"] < b["end_date"]


def test_a_cancelled_backfill_starts_nothing_new_and_leaves_nothing_queued(airflow, side_by_side, figures):
    deadline = time.monotonic() + 300
    while True:
        runs = day_runs(airflow, SLOW, "2024-03-01", "2024-03-08")
        if all(r["state"] in ("success", "failed") for r in runs.values()):
            break
        assert time.monotonic() < deadline, {d: r["state"] for d, r in runs.items()}
        time.sleep(2)
    time.sleep(10)  # nothing new appears afterwards either
    started = len(day_runs(airflow, SLOW, "2024-03-01", "2024-03-08"))
    figures.fault("backfill cancelled mid-way (nothing new, nothing left queued)", 1 <= started <= 4)
    assert 1 <= started <= 4


def test_cancelling_a_backfill_whose_runs_wait_queued_fails_the_queued_ones(airflow, figures):
    """bf_capped holds its runs back itself (max_active_runs 2): the controller keeps up to 8 more
    queued behind them and waits deferred. Cancelled then, the queued ones are marked failed (as
    cancelling a native backfill does), the running ones finish, and nothing new starts."""
    capped, first, last = "bf_capped", "2024-05-01", "2024-05-12"
    conf = {"dag_id": capped, "start_date": first, "end_date": last, "max_active_runs": 2}
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    wait_for_a_deferred_trigger(airflow, run_id)
    resp = airflow.api(
        "PATCH", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}", json={"state": "failed"}
    )
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 120
    while any(r["state"] in OPEN_RUN for r in day_runs(airflow, capped, first, last).values()):
        assert time.monotonic() < deadline, "runs of the cancelled backfill are still open"
        time.sleep(1)
    time.sleep(10)  # nothing new appears afterwards either
    runs = day_runs(airflow, capped, first, last)
    never_started = [r for r in runs.values() if not r.get("start_date")]
    ok = bool(never_started) and all(r["state"] == "failed" for r in never_started) and len(runs) < 12
    figures.fault("backfill cancelled while runs waited queued (queued ones failed, nothing new)", ok)
    assert never_started, {d: (r["state"], r.get("start_date")) for d, r in runs.items()}
    assert all(r["state"] == "failed" for r in never_started)
    assert len(runs) < 12  # the dates not triggered yet never were
