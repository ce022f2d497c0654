"""The front door: ``POST /backfill-controller/api/backfills`` (and its ``dry_run``) checks a request
in the request itself (its latency is measured by ``make bench``).

Every bad request of the bad-input table is refused with 4xx naming the field, and nothing is
created; a dry run is what the controller then does; hostile input ends in bounded time; the
controller's own conf keys and run ids are refused when a user sends them.
"""

from __future__ import annotations

import time

import pytest
from test_bad_requests import REFUSED_BY_PARAMS, REFUSED_BY_PLAN, TARGET, target_runs
from test_controller import TIMEOUT

from backfill_controller.contract import (
    CATCHUP_PREFIX,
    CONTINUES_KEY,
    CONTROLLER_DAG_ID,
    TARGET_RUN_PREFIX,
    URL_PREFIX,
    Task,
    continuation_run_id,
)

pytestmark = pytest.mark.backend("sqlite")

FRONT_DOOR = f"{URL_PREFIX}/api/backfills"
#: The conf key each refusal of the Params table is about.
PARAMS_FIELD = {
    "missing dag_id": "dag_id",
    "reprocess not an enum": "reprocess",
    "max_active_runs zero": "max_active_runs",
    "start_date not a date": "start_date",
    "dates not a list": "dates",
    "chunk_size negative": "chunk_size",
    "dry_run not a boolean": "dry_run",
    "hostile: dag_id a path": "dag_id",
    "hostile: dag_id an object": "dag_id",
    "hostile: reason of 5,000 characters": "reason",
    "hostile: 20,000 dates": "dates",
}
BAD = {
    **{name: (conf, PARAMS_FIELD[name]) for name, (conf, _) in REFUSED_BY_PARAMS.items()},
    **{name: (conf, fragments[0]) for name, (conf, fragments) in REFUSED_BY_PLAN.items()},
}


def controller_runs(airflow) -> int:
    return int(
        airflow._json("GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns", params={"limit": 1})[
            "total_entries"
        ]
    )


def post(airflow, path: str, conf, **kwargs):
    for _ in range(5):  # SQLite may answer 500/503 "database is locked" under load: nothing was created
        resp = airflow.api("POST", path, json=conf, **kwargs)
        if resp.status_code not in (500, 503):
            return resp
        time.sleep(3)
    return resp


@pytest.fixture(scope="module")
def paused(airflow):
    airflow.set_paused("bf_none_native", True)


@pytest.mark.parametrize("name", list(BAD), ids=list(BAD))
def test_every_bad_request_is_answered_at_once_naming_the_field(airflow, paused, figures, name):
    conf, field = BAD[name]
    before = controller_runs(airflow)
    resp = post(airflow, FRONT_DOOR, conf)
    body = resp.json()
    named = field in str(body.get("detail"))
    figures.bad_input(f"front door: {name}", 400 <= resp.status_code < 500 and named)
    assert 400 <= resp.status_code < 500, resp.text[:2000]
    assert named, body
    assert controller_runs(airflow) == before
    assert target_runs(airflow) == []


def test_the_errors_are_listed_each_with_field_value_problem_and_accepted(airflow):
    conf = {"dag_id": TARGET, "dates": ["2024-01-01T05:00:00"], "conf": {"batch_size": 0}, "reprocess": "x"}
    resp = post(airflow, FRONT_DOOR, conf)
    assert resp.status_code == 422, resp.text
    (error,) = resp.json()["detail"]["errors"]  # a field problem is answered before the target is read
    assert error == {
        "field": "reprocess",
        "value": "x",
        "problem": "is not a reprocess mode",
        "accepted": "one of missing, failed, all (native names none and completed are accepted too)",
    }
    conf["reprocess"] = "failed"
    resp = post(airflow, FRONT_DOOR, conf)
    assert resp.status_code == 422, resp.text
    fields = sorted(e["field"] for e in resp.json()["detail"]["errors"])
    assert fields == ["conf.batch_size", "dates"]  # both target problems at once


def test_a_dry_run_is_what_the_controller_then_does(airflow):
    conf = {"dag_id": "bf_daily", "start_date": "2024-11-01", "end_date": "2024-11-04"}
    first = airflow.trigger(CONTROLLER_DAG_ID, {"dag_id": "bf_daily", "dates": ["2024-11-02"]})
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, first, timeout=TIMEOUT) == "success"
    resp = post(airflow, FRONT_DOOR + "/dry_run", conf)
    assert resp.status_code == 200, resp.text
    preview = resp.json()
    assert preview["dry_run"] is True and preview["counts"]["dates"] == 4
    for date in preview["dates"]:
        assert {"logical_date", "data_interval_start", "data_interval_end", "action", "why"} <= set(date)
    started = post(airflow, FRONT_DOOR, {**conf, "reason": "first window", "max_active_runs": 2})
    assert started.status_code == 201, started.text
    run_id = started.json()["dag_run_id"]
    # The first window's runs are queued when the request is answered, as the trigger task makes them.
    first = {r["logical_date"][:10]: r for r in airflow.dag_runs("bf_daily", "2024-11-01", "2024-11-04")}
    assert sorted(first) == ["2024-11-01", "2024-11-02", "2024-11-03"]  # 11-02: the earlier backfill's
    for day in ("2024-11-01", "2024-11-03"):
        assert first[day]["dag_run_id"] == f"{TARGET_RUN_PREFIX}{day}T00:00:00+00:00"
        assert first[day]["run_type"] == "operator_triggered"
        assert first[day]["triggering_user_name"] == airflow.username
        assert first[day]["note"] == f"backfill_controller ({airflow.username}): first window"
        assert first[day]["conf"] == {}
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) == "success"
    report = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)
    assert report["triggered_by"] == airflow.username
    triggered = [d for d in report["dates"] if d["action"] == "triggered"]
    assert [(d["run_id"], d["state"]) for d in triggered] == [  # its own runs, none adopted
        (f"{TARGET_RUN_PREFIX}{day}T00:00:00+00:00", "success")
        for day in ("2024-11-01", "2024-11-03", "2024-11-04")
    ]
    keys = ("logical_date", "action", "why", "data_interval_start", "data_interval_end")
    assert [{k: d[k] for k in keys} for d in report["dates"]] == [
        {k: d[k] for k in keys} for d in preview["dates"]
    ]
    assert [d["action"] for d in preview["dates"]] == ["triggered", "skipped", "triggered", "triggered"]


def test_a_dry_run_covers_10000_dates(airflow):
    conf = {"dag_id": "bf_hourly", "start_date": "2024-01-01", "end_date": "2025-02-20T15:00:00"}
    resp = post(airflow, FRONT_DOOR + "/dry_run", conf)
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["counts"]["dates"] == 10_000


def test_a_hostile_task_regex_ends_in_bounded_time_with_a_clear_error(airflow):
    long_ids = {"dag_id": "bf_long_task_ids", "dates": ["2024-10-03"], "task_regex": "(a+)+$"}
    resp = post(airflow, FRONT_DOOR + "/dry_run", long_ids)
    assert resp.status_code == 422, resp.text
    assert "task_regex" in resp.text and "bounded time" in resp.text


@pytest.mark.parametrize(
    "conf, run_id, shown",
    [
        (
            {
                "dag_id": "bf_daily",
                "dates": ["2024-10-05"],
                CONTINUES_KEY: {"head_run_id": "x", "segment": 1},
            },
            None,
            CONTINUES_KEY,
        ),
        ({"dag_id": "bf_daily", "dates": ["2024-10-05"]}, continuation_run_id("manual__x", 1), "run_id"),
        ({"dag_id": "bf_daily", "dates": ["2024-10-05"]}, f"{CATCHUP_PREFIX}bf_daily__x", "run_id"),
    ],
    ids=["a continuation's conf key", "a segment-shaped run id", "a catch-up-shaped run id"],
)
def test_the_controllers_own_keys_and_run_ids_are_refused_from_a_user(airflow, conf, run_id, shown):
    resp = post(airflow, FRONT_DOOR, conf, params={"run_id": run_id} if run_id else None)
    assert resp.status_code == 422 and shown in resp.text, resp.text
    if shown == "run_id" and run_id.startswith(CATCHUP_PREFIX):
        return  # through REST, the deployment's own account may (it is the catch-up): test_authorization
    # The same through a REST trigger of the controller: its plan refuses it, nothing is created.
    triggered = airflow.trigger(CONTROLLER_DAG_ID, conf, run_id=run_id)
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, triggered, timeout=TIMEOUT) == "failed"
    report = airflow.xcom(CONTROLLER_DAG_ID, triggered, Task.REPORT)
    assert shown in report["error"] and report["dates"] == []
    assert airflow.dag_runs("bf_daily", "2024-10-05", "2024-10-05") == []
