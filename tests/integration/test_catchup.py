"""Scheduled catch-up end to end: backfill_catchup finds the gaps of the configured DAGs and hands
them to the controller; with no gaps it does nothing.

Config: tests/support/catchup.yaml (bf_recent: lookback P6D, reprocess failed, at most 3 dates per
run; bf_paused: a paused DAG, left alone). bf_recent is a live daily DAG: the scheduler made its
latest run only.
"""

from __future__ import annotations

import time

import pendulum
import pytest
from test_controller import TIMEOUT

from backfill_controller.contract import CATCHUP_DAG_ID, CONTROLLER_DAG_ID, Task

pytestmark = pytest.mark.backend("sqlite")

TARGET = "bf_recent"


def catch_up_result(airflow, run_id: str, index: int) -> dict:
    return airflow.xcom(CATCHUP_DAG_ID, run_id, "catch_up", map_index=index)


def target_runs(airflow) -> dict[str, dict]:
    data = airflow._json("GET", f"/api/v2/dags/{TARGET}/dagRuns", params={"limit": 100})
    return {r["logical_date"]: r for r in data["dag_runs"]}


def wait_until(check, timeout: float = 180, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    raise TimeoutError(f"no {what} after {timeout:.0f}s")


def finish(airflow, run_id: str) -> tuple[str, dict, dict]:
    """Wait for a catch-up run and the controller run it started; return (state, recent, paused)."""
    state = airflow.wait_for_run(CATCHUP_DAG_ID, run_id, timeout=TIMEOUT)
    recent, paused = catch_up_result(airflow, run_id, 0), catch_up_result(airflow, run_id, 1)
    if recent["controller_run_id"]:
        airflow.wait_for_run(CONTROLLER_DAG_ID, recent["controller_run_id"], timeout=TIMEOUT)
    return state, recent, paused


@pytest.fixture(scope="module")
def rounds(airflow):
    """Three catch-up runs: the scheduled one after unpausing, then two triggered by hand."""
    wait_until(lambda: target_runs(airflow), what=f"scheduler-made run of {TARGET}")
    airflow.set_paused(CATCHUP_DAG_ID, False)
    try:
        scheduled = wait_until(
            lambda: airflow._json(
                "GET", f"/api/v2/dags/{CATCHUP_DAG_ID}/dagRuns", params={"run_type": "scheduled"}
            )["dag_runs"],
            what="scheduled catch-up run",
        )[0]["dag_run_id"]
        first = finish(airflow, scheduled)
        # The newest date's run (made by the scheduler) fails later: reprocess=failed must pick it up.
        newest = max(target_runs(airflow).values(), key=lambda r: r["logical_date"])
        airflow.mark_failed(TARGET, newest["dag_run_id"])
        second = finish(airflow, airflow.trigger(CATCHUP_DAG_ID))
        third = finish(airflow, airflow.trigger(CATCHUP_DAG_ID))
    finally:
        airflow.set_paused(CATCHUP_DAG_ID, True)
    return {"first": first, "second": second, "third": third, "failed_date": newest["logical_date"]}


def test_the_scheduled_run_hands_the_oldest_gaps_to_the_controller_at_most_max_dates_per_run(airflow, rounds):
    state, recent, _ = rounds["first"]
    assert state == "success"
    assert recent["gaps"] >= 4  # six days looked at, one run made by the scheduler
    assert len(recent["dates"]) == 3 and recent["dates"] == sorted(recent["dates"])
    assert airflow.run_state(CONTROLLER_DAG_ID, recent["controller_run_id"]) == "success"
    report = airflow.xcom(CONTROLLER_DAG_ID, recent["controller_run_id"], Task.REPORT)
    assert report["reason"].startswith("scheduled catch-up (backfill_catchup run scheduled__")


def test_the_next_run_heals_the_rest_and_the_failed_run(airflow, rounds):
    state, recent, _ = rounds["second"]
    assert state == "success"
    assert pendulum.parse(rounds["failed_date"]) in [pendulum.parse(d) for d in recent["dates"]]
    assert all(r["state"] == "success" for r in target_runs(airflow).values())


def test_with_no_gaps_it_triggers_nothing(rounds):
    state, recent, _ = rounds["third"]
    assert state == "success"
    assert recent["gaps"] == 0 and recent["controller_run_id"] is None


def test_a_paused_dag_is_left_alone_saying_why(rounds):
    for _, _, paused in (rounds["first"], rounds["second"], rounds["third"]):
        assert paused["controller_run_id"] is None and paused["skipped"] == "the DAG is paused"


def test_a_retried_catch_up_triggers_the_controller_once(airflow, rounds):
    _, recent, _ = rounds["first"]
    catchup_run = recent["controller_run_id"].split("__", 2)[2]
    conf = airflow._json("GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{recent['controller_run_id']}")[
        "conf"
    ]
    again = airflow.api(
        "POST",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns",
        json={"dag_run_id": recent["controller_run_id"], "logical_date": None, "conf": conf},
    )
    assert again.status_code == 409  # run_id derived from the catch-up run: a retry cannot duplicate it
    assert catchup_run.startswith("scheduled__")
