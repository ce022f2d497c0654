"""Bad requests are refused with a message naming the field, and change nothing.

Where the trigger form's Params can tell, the REST trigger itself answers HTTP 400; the rest are
refused by the controller's ``plan`` task before any target run is created or cleared.
"""

from __future__ import annotations

import pytest

from backfill_controller.contract import CONTROLLER_DAG_ID, Task

# Validation happens before anything touches the database: the embedded default backend is enough.
pytestmark = pytest.mark.backend("sqlite")

TARGET = "bf_params"  # never backfilled successfully by any test: it must keep zero runs in 2024
PAUSED = "bf_none_native"

REFUSED_BY_PARAMS = {
    "missing dag_id": ({"start_date": "2024-01-01", "end_date": "2024-01-02"}, "dag_id"),
    "reprocess not an enum": (
        {"dag_id": TARGET, "dates": ["2024-01-01"], "reprocess": "sometimes"},
        "sometimes",
    ),
    "max_active_runs zero": ({"dag_id": TARGET, "dates": ["2024-01-01"], "max_active_runs": 0}, "0"),
    "start_date not a date": (
        {"dag_id": TARGET, "start_date": "yesterday", "end_date": "2024-01-02"},
        "yesterday",
    ),
    "dates not a list": ({"dag_id": TARGET, "dates": "2024-01-01"}, "2024-01-01"),
    "chunk_size negative": ({"dag_id": TARGET, "dates": ["2024-01-01"], "chunk_size": -1}, "-1"),
    "dry_run not a boolean": ({"dag_id": TARGET, "dates": ["2024-01-01"], "dry_run": "yes"}, "yes"),
    # hostile input
    "hostile: dag_id a path": ({"dag_id": "../../etc/passwd", "dates": ["2024-01-01"]}, "does not match"),
    "hostile: dag_id an object": ({"dag_id": {"$ne": None}, "dates": ["2024-01-01"]}, "not of type"),
    "hostile: reason of 5,000 characters": (
        {"dag_id": TARGET, "dates": ["2024-01-01"], "reason": "x" * 5000},
        "is too long",
    ),
    "hostile: 20,000 dates": ({"dag_id": TARGET, "dates": ["2024-01-01"] * 20_000}, "is too long"),
}


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"x": value}
    return value


REFUSED_BY_PLAN = {
    "unknown key (typo)": (
        {"dag_id": TARGET, "strat_date": "2024-01-01", "end_date": "2024-01-03"},
        ["strat_date", "did you mean 'start_date'"],
    ),
    "unknown target": ({"dag_id": "no_such_dag", "dates": ["2024-01-01"]}, ["dag_id", "no such DAG"]),
    "paused target": ({"dag_id": PAUSED, "dates": ["2024-01-01"]}, ["dag_id", "paused", "unpause"]),
    "window in the future": (
        {"dag_id": TARGET, "start_date": "2999-01-01", "end_date": "2999-01-02"},
        ["start_date", "future"],
    ),
    "start after end": (
        {"dag_id": TARGET, "start_date": "2024-02-01", "end_date": "2024-01-01"},
        ["start_date", "after end_date"],
    ),
    "controller as its own target": ({"dag_id": CONTROLLER_DAG_ID, "dates": ["2024-01-01"]}, ["itself"]),
    "date not on the schedule": (
        {"dag_id": TARGET, "dates": ["2024-01-01T05:00:00"]},
        ["dates", "nearest valid", "2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00"],
    ),
    "conf refused by the target's Params": (
        {"dag_id": TARGET, "dates": ["2024-01-01"], "conf": {"batch_size": 0}},
        ["conf.batch_size", "minimum"],
    ),
    "window for an unscheduled target": (
        {"dag_id": "bf_none", "start_date": "2024-01-01", "end_date": "2024-01-03"},
        ["start_date", "dates"],
    ),
    "chunk larger than max_active_runs": (
        {"dag_id": TARGET, "dates": ["2024-01-01"], "chunk_size": 5, "max_active_runs": 2},
        ["chunk_size", "max_active_runs"],
    ),
    "both dates and a window": (
        {"dag_id": TARGET, "dates": ["2024-01-01"], "start_date": "2024-01-01", "end_date": "2024-01-02"},
        ["dates", "not both"],
    ),
    "duplicate dates": ({"dag_id": TARGET, "dates": ["2024-01-01", "2024-01-01"]}, ["dates", "twice"]),
    "target refusing operator-triggered runs": (
        {"dag_id": "bf_manual_only", "dates": ["2024-01-01"]},
        ["dag_id", "allowed_run_types", "operator_triggered"],
    ),
    # hostile input the trigger form lets through: the plan refuses it
    "hostile: conf nested 40 levels deep": (
        {"dag_id": TARGET, "dates": ["2024-01-01"], "conf": nested(40)},
        ["conf", "nests deeper than 16 levels"],
    ),
    "hostile: conf of 100 KB": (
        {"dag_id": TARGET, "dates": ["2024-01-01"], "conf": {"blob": "x" * 100_000}},
        ["conf", "too large"],
    ),
    "hostile: terminal escapes in reason": (
        {"dag_id": TARGET, "dates": ["2024-01-01"], "reason": "ok\x1b[2J\x07"},
        ["reason", "control characters"],
    ),
}


def target_runs(airflow) -> list[dict]:
    data = airflow._json(
        "GET",
        f"/api/v2/dags/{TARGET}/dagRuns",
        params={"logical_date_gte": "2024-01-01T00:00:00Z", "logical_date_lte": "2024-12-31T00:00:00Z"},
    )
    return data["dag_runs"]


@pytest.fixture(scope="module")
def refused(airflow) -> dict[str, tuple[str, dict]]:
    airflow.set_paused(PAUSED, True)
    before = target_runs(airflow)
    started = {name: airflow.trigger(CONTROLLER_DAG_ID, conf) for name, (conf, _) in REFUSED_BY_PLAN.items()}
    results = {}
    for name, run_id in started.items():
        state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=600)
        results[name] = (state, airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT))
    assert target_runs(airflow) == before == []
    return results


@pytest.mark.parametrize("name", list(REFUSED_BY_PARAMS), ids=list(REFUSED_BY_PARAMS))
def test_rest_trigger_refuses_with_http_400(airflow, figures, name):
    conf, shown = REFUSED_BY_PARAMS[name]
    resp = airflow.post_run(CONTROLLER_DAG_ID, conf)
    figures.bad_input(name, resp.status_code == 400 and shown in resp.text)
    assert resp.status_code == 400, resp.text[:2000]
    assert shown in resp.text


@pytest.mark.parametrize("name", list(REFUSED_BY_PLAN), ids=list(REFUSED_BY_PLAN))
def test_plan_refuses_naming_the_field_and_changes_nothing(refused, figures, name):
    state, report = refused[name]
    clear = all(fragment in (report.get("error") or "") for fragment in REFUSED_BY_PLAN[name][1])
    figures.bad_input(name, state == "failed" and report["dates"] == [] and clear)
    assert state == "failed"
    assert report["success"] is False and report["dates"] == []
    for fragment in REFUSED_BY_PLAN[name][1]:
        assert fragment in report["error"]
