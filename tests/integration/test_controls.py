"""Operating a running backfill over REST: pause, resume, cancel, re-run its failed dates.

Each control is ``POST /backfill-controller/api/backfills/{run_id}/{control}``; the answers for
a control that does not fit (409), an unknown backfill (404) and a missing right (403) are here
too (per-DAG FAB roles: ``test_authorization.py``).
"""

from __future__ import annotations

import time

import pytest
from test_controller import TIMEOUT, day_runs, set_failing
from test_front_door import post

from backfill_controller.contract import CONTROLLER_DAG_ID, URL_PREFIX, Task

BACKFILLS = f"{URL_PREFIX}/api/backfills"
TARGET = "bf_capped"  # runs of about 6 s, at most 2 at once


def control(airflow, run_id: str, action: str, **kwargs):
    return post(airflow, f"{BACKFILLS}/{run_id}/{action}", {}, **kwargs)


def backfill(airflow, run_id: str) -> dict:
    return airflow._json("GET", f"{BACKFILLS}/{run_id}")


def wait_until(what: str, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.5)


@pytest.mark.backend("sqlite")  # what a pause reads and writes is the record's, on either database
def test_a_paused_backfill_starts_nothing_until_resumed_across_a_segment_boundary(airflow):
    """Paused once the last date of its first segment has started: that segment ends, its
    continuation run starts, yet no date starts for 15 s (three looks at the pause); resumed,
    every date runs once."""
    dates = [f"2024-08-2{d}" for d in range(1, 7)]
    conf = {"dag_id": TARGET, "dates": dates, "max_active_runs": 1, "segment_size": 3}
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    wait_until("the third date's run", lambda: dates[2] in day_runs(airflow, TARGET, dates[0], dates[-1]))
    paused = control(airflow, run_id, "pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["phase"] == "paused" and paused.json()["paused"] is True
    again = control(airflow, run_id, "pause")
    assert again.status_code == 409 and "paused already" in again.text, again.text

    time.sleep(5)  # a date whose look at the pause came just before it may still be starting
    started = sorted(day_runs(airflow, TARGET, dates[0], dates[-1]))
    assert len(started) < len(dates), "every date had started: the pause was not tested"
    time.sleep(15)
    assert sorted(day_runs(airflow, TARGET, dates[0], dates[-1])) == started  # nothing started
    assert backfill(airflow, run_id)["phase"] == "paused"

    resumed = control(airflow, run_id, "resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["phase"] in ("running", "succeeded")
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) == "success"
    runs = day_runs(airflow, TARGET, dates[0], dates[-1])
    assert sorted(runs) == dates and {r["state"] for r in runs.values()} == {"success"}
    assert all(r.get("clear_number", 0) == 0 for r in runs.values())  # each date run once
    shown = backfill(airflow, run_id)
    assert [(h["action"], h["by"]) for h in shown["history"]] == [("pause", "admin"), ("resume", "admin")]
    assert shown["segments"] == 2 and shown["phase"] == "succeeded"


def test_the_failed_dates_are_re_run_once_repaired(airflow):
    dates = ["2024-05-24", "2024-05-25", "2024-05-26"]
    set_failing(airflow, {"bf_daily": ["2024-05-25"]})
    try:
        first = airflow.trigger(CONTROLLER_DAG_ID, {"dag_id": "bf_daily", "dates": dates, "reason": "load"})
        assert airflow.wait_for_run(CONTROLLER_DAG_ID, first, timeout=TIMEOUT) == "failed"
    finally:
        set_failing(airflow, {})  # repaired
    rerun = control(airflow, first, "rerun_failed")
    assert rerun.status_code == 201, rerun.text
    second = rerun.json()["dag_run_id"]
    assert rerun.json()["dates"] == 1 and second != first
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, second, timeout=TIMEOUT) == "success"
    report = airflow.xcom(CONTROLLER_DAG_ID, second, Task.REPORT)
    assert [(d["logical_date"][:10], d["action"]) for d in report["dates"]] == [("2024-05-25", "cleared")]
    assert report["reason"] == f"re-run of failed dates of {first}"
    assert {r["state"] for r in day_runs(airflow, "bf_daily", dates[0], dates[-1]).values()} == {"success"}
    shown = backfill(airflow, first)
    assert [(h["action"], h["detail"]) for h in shown["history"]] == [("rerun_failed", second)]
    # The first backfill keeps what happened in it, as its report said: the date failed there.
    assert shown["progress"]["tally"]["failed"] == 1
    assert [c["state"] for c in shown["cells"]] == ["success", "failed", "success"]
    nothing_left = control(airflow, second, "rerun_failed")
    assert nothing_left.status_code == 409 and "no date of it ended failed" in nothing_left.text


def test_a_control_that_does_not_fit_the_phase_is_refused_naming_it(airflow):
    run_id = airflow.trigger(CONTROLLER_DAG_ID, {"dag_id": "bf_daily", "dates": ["2024-05-20"]})
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) == "success"
    for action in ("pause", "resume", "cancel"):
        refused = control(airflow, run_id, action)
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"]["phase"] == "succeeded"
        assert "the backfill is succeeded" in refused.json()["detail"]["message"]
    assert backfill(airflow, run_id)["history"] == []  # a refusal changes nothing


@pytest.mark.parametrize("action", ["pause", "resume", "cancel", "rerun_failed"])
def test_a_control_of_no_backfill_is_404(airflow, action):
    missing = control(airflow, "manual__no_such_backfill", action)
    assert missing.status_code == 404 and "no backfill has the run id" in missing.text


def test_a_control_is_sent_as_json_only(airflow):
    """A page of another site cannot post a form here with the UI's cookie."""
    form = airflow.api("POST", f"{BACKFILLS}/manual__x/pause", data={"a": "b"})
    assert form.status_code == 415, form.text


@pytest.mark.backend("sqlite")
def test_a_viewer_may_not_operate_a_backfill(airflow):
    from conftest import SECRET

    run_id = airflow.trigger(CONTROLLER_DAG_ID, {"dag_id": "bf_daily", "dates": ["2024-05-21"]})
    token = airflow.token_for("vera", SECRET)  # SimpleAuthManager's viewer
    for action in ("pause", "cancel"):
        refused = control(airflow, run_id, action, token=token)
        assert refused.status_code == 403, refused.text
        assert "PUT on its DAG runs" in refused.text
    airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT)
    assert backfill(airflow, run_id)["history"] == []
