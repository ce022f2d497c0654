"""Faults injected into a live Airflow mid-backfill: the backfill completes with the right result,
and no date ends with two runs or is cleared twice.

Run on PostgreSQL only: on SQLite a killed scheduler routinely leaves the database locked
(see the project notes), which tests SQLite, not the controller.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from test_controller import TIMEOUT, Outcome, day_runs, set_failing, wait_for_a_deferred_trigger

from backfill_controller.contract import CONTROLLER_DAG_ID, TARGET_RUN_PREFIX, Task

TARGET = "bf_sturdy"


pytestmark = pytest.mark.backend("postgres")  # SQLite locks when a scheduler dies


def started(airflow, conf: dict) -> str:
    """Trigger and wait until the first target run of the window exists (the backfill is underway)."""
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    first, last = (
        (conf["dates"][0], conf["dates"][-1]) if "dates" in conf else (conf["start_date"], conf["end_date"])
    )
    deadline = time.monotonic() + 300
    while not day_runs(airflow, conf["dag_id"], first, last):
        assert time.monotonic() < deadline, "the backfill never started"
        time.sleep(1)
    return run_id


def finished(airflow, run_id: str) -> Outcome:
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT)
    return Outcome(run_id, state, airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT))


def days(first: str, count: int) -> list[str]:
    return [f"{first[:8]}{int(first[8:]) + i:02d}" for i in range(count)]


def record(
    figures, airflow, what: str, out: Outcome, first: str, count: int, earlier: int = 0, target: str = TARGET
) -> None:
    """Record the fault, and per date of its window how many times its work ran to success
    (``earlier``: successes before this backfill). None is lost, more than one is duplicated."""
    runs = day_runs(airflow, target, first, days(first, count)[-1])
    per_date = {}
    for day, run in runs.items():
        tries = airflow._json(
            "GET", f"/api/v2/dags/{target}/dagRuns/{run['dag_run_id']}/taskInstances/load/tries"
        )["task_instances"]
        per_date[day] = [t["state"] for t in tries].count("success") - earlier
    figures.fault(what, out.state == "success")
    figures.runs(set(days(first, count)), per_date)


def window(start: str, days: int) -> dict:
    return {
        "dag_id": TARGET,
        "start_date": start,
        "end_date": f"{start[:8]}{int(start[8:]) + days - 1:02d}",
        "chunk_size": 2,
        "max_active_runs": 2,
    }


def test_scheduler_and_its_workers_killed_mid_backfill(airflow, figures):
    run_id = started(airflow, window("2024-05-01", 6))
    airflow.restart("scheduler", kill=True, down_for=2)
    out = finished(airflow, run_id)
    record(figures, airflow, "scheduler and its workers SIGKILLed mid-backfill", out, "2024-05-01", 6)
    assert out.state == "success", out.report
    runs = day_runs(airflow, TARGET, "2024-05-01", "2024-05-06")
    assert sorted(runs) == [f"2024-05-0{d}" for d in range(1, 7)]  # one run per date, none twice
    assert all(r["dag_run_id"].startswith(TARGET_RUN_PREFIX) for r in runs.values())


def test_api_server_restarted_mid_backfill(airflow, figures):
    run_id = started(airflow, window("2024-05-11", 6))
    airflow.restart("api-server", down_for=2)
    out = finished(airflow, run_id)
    record(figures, airflow, "api-server restarted mid-backfill", out, "2024-05-11", 6)
    assert out.state == "success", out.report
    assert len(day_runs(airflow, TARGET, "2024-05-11", "2024-05-16")) == 6


def test_cleared_dates_are_cleared_once_despite_a_killed_scheduler(airflow, figures):
    first = finished(airflow, airflow.trigger(CONTROLLER_DAG_ID, {**window("2024-05-21", 4)}))
    assert first.state == "success"
    run_id = started(airflow, {**window("2024-05-21", 4), "reprocess": "all"})
    airflow.restart("scheduler", kill=True, down_for=2)
    out = finished(airflow, run_id)
    what = "scheduler SIGKILLed while clearing existing runs"
    record(figures, airflow, what, out, "2024-05-21", 4, earlier=1)
    assert out.state == "success", out.report
    assert out.dates(action="cleared", state="success") == [f"2024-05-2{d}" for d in range(1, 5)]
    for day, run in day_runs(airflow, TARGET, "2024-05-21", "2024-05-24").items():
        tries = airflow._json(
            "GET", f"/api/v2/dags/{TARGET}/dagRuns/{run['dag_run_id']}/taskInstances/load/tries"
        )["task_instances"]
        # Succeeded once before, once after the single clear (a try killed with its worker failed).
        assert [t["state"] for t in tries].count("success") == 2, (day, tries)


def test_retriggering_after_a_crash_resumes_with_the_dates_not_done(airflow, figures):
    conf = window("2024-06-01", 8)
    crashed = started(airflow, conf)
    resp = airflow.api(
        "PATCH", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{crashed}", json={"state": "failed"}
    )
    assert resp.status_code == 200, resp.text
    time.sleep(5)
    done_before = set(day_runs(airflow, TARGET, "2024-06-01", "2024-06-08"))
    resumed = finished(airflow, airflow.trigger(CONTROLLER_DAG_ID, conf))
    record(figures, airflow, "controller run crashed, then re-triggered", resumed, "2024-06-01", 8)
    assert resumed.state == "success", resumed.report
    assert set(resumed.dates(action="triggered")) == {f"2024-06-0{d}" for d in range(1, 9)} - done_before
    assert sorted(day_runs(airflow, TARGET, "2024-06-01", "2024-06-08")) == [
        f"2024-06-0{d}" for d in range(1, 9)
    ]


def running_trigger_pids(airflow, run_id: str, chunk: int | None = None) -> list[int]:
    """PIDs of the controller's ``trigger`` task instances running right now (of one chunk, if given)."""
    tis = airflow._json(
        "GET",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}/taskInstances",
        params={"task_id": Task.TRIGGER, "state": "running", "limit": 100},
    )["task_instances"]
    return [ti["pid"] for ti in tis if ti.get("pid") and chunk in (None, ti["map_index"])]


def kill_a_trigger_task(airflow, run_id: str, chunk: int | None = None) -> int:
    """SIGKILL the process of a running ``trigger`` task of the run as soon as one is seen."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for pid in running_trigger_pids(airflow, run_id, chunk):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            return pid
        time.sleep(0.1)
    pytest.fail("no trigger task was ever caught running")


def test_the_process_of_a_trigger_task_killed_while_triggering(airflow, figures):
    """SIGKILL to the task process of one mapped trigger task, mid-chunk: it fails, is retried, and
    the retry finds the dates it had triggered already there (exactly one run each, never cleared).
    The later chunks wait for the retry: the runs are still created in logical-date order."""
    conf = {**window("2024-06-11", 8), "chunk_size": 3, "max_active_runs": 3}
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    kill_a_trigger_task(airflow, run_id)
    out = finished(airflow, run_id)
    record(figures, airflow, "one trigger task's process SIGKILLed while triggering", out, "2024-06-11", 8)
    assert out.state == "success", out.report
    tries = airflow._json(
        "GET",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}/taskInstances",
        params={"task_id": Task.TRIGGER},
    )["task_instances"]
    assert max(ti["try_number"] for ti in tries) >= 2  # the killed one was retried
    runs = day_runs(airflow, TARGET, "2024-06-11", "2024-06-18")
    assert sorted(runs) == days("2024-06-11", 8)
    assert all(r["dag_run_id"].startswith(TARGET_RUN_PREFIX) for r in runs.values())
    assert all(r.get("clear_number", 0) == 0 for r in runs.values())  # triggered once, never cleared
    created = [day for day, _ in sorted(runs.items(), key=lambda item: item[1]["queued_at"])]
    assert created == sorted(runs), f"runs created out of order: {created}"


def test_a_killed_chunk_still_spends_the_failure_budget_first(airflow, figures):
    """Both dates of the first chunk fail, which is the whole budget (max_failed_dates 2), and its
    task is SIGKILLed and retried. The chunks after it wait for the retry and for its dates to end,
    then start nothing: no run exists past the first chunk."""
    dates = days("2024-11-01", 8)
    conf = {
        "dag_id": "bf_chain",
        "dates": dates,
        "chunk_size": 2,
        "max_active_runs": 2,
        "max_failed_dates": 2,
    }
    set_failing(airflow, {"bf_chain.a": dates[:2]})
    try:
        run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
        kill_a_trigger_task(airflow, run_id, chunk=0)
        out = finished(airflow, run_id)
    finally:
        set_failing(airflow, {})
    runs = day_runs(airflow, "bf_chain", dates[0], dates[-1])
    figures.fault(
        "the first chunk's task SIGKILLed while it spends the failure budget", sorted(runs) == dates[:2]
    )
    assert out.state == "failed", out.report
    assert sorted(runs) == dates[:2], f"runs started past the budget: {sorted(runs)}"
    by_date = {d["logical_date"][:10]: d for d in out.report["dates"]}
    assert [by_date[d]["state"] for d in dates] == ["failed"] * 2 + ["cancelled"] * 6, out.report
    assert all("max_failed_dates" in by_date[d]["why"] for d in dates[2:]), out.report
    tries = airflow._json(
        "GET",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}/taskInstances",
        params={"task_id": Task.TRIGGER},
    )["task_instances"]
    assert next(ti for ti in tries if ti["map_index"] == 0)["try_number"] >= 2  # the killed one was retried


def test_the_triggerer_killed_while_a_chunk_waits_deferred_for_room(airflow, figures):
    """A target that holds its runs back (max_active_runs 2): the chunk's task waits deferred in
    the triggerer while the window (6) is full. SIGKILL the triggerer then: the waiting trigger is
    picked up again when it is back, and every date runs exactly once."""
    target, first = "bf_sturdy_capped", "2024-07-01"
    conf = {"dag_id": target, "start_date": first, "end_date": "2024-07-12", "max_active_runs": 2}
    run_id = started(airflow, conf)
    wait_for_a_deferred_trigger(airflow, run_id)
    airflow.restart("triggerer", kill=True, down_for=2)
    out = finished(airflow, run_id)
    what = "triggerer SIGKILLed while a chunk waits deferred for room"
    record(figures, airflow, what, out, first, 12, target=target)
    assert out.state == "success", out.report
    runs = day_runs(airflow, target, first, "2024-07-12")
    assert sorted(runs) == days(first, 12)
    assert all(r.get("clear_number", 0) == 0 for r in runs.values())  # triggered once, never cleared
