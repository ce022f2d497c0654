"""REST credentials live only in the ``airflow_api`` connection: never in conf, logs, XCom or notes."""

from __future__ import annotations

import pytest
from test_controller import run_all

from backfill_controller.contract import CONTROLLER_DAG_ID, Task, XCom

pytestmark = pytest.mark.backend("sqlite")


def test_the_rest_password_appears_in_no_log_xcom_or_note(airflow):
    secret = airflow.password  # a distinctive password (tests/conftest.py)
    # A clear (REST: note + clearTaskInstances) and a trigger, so every REST path has run.
    first = run_all(airflow, {"a": {"dag_id": "bf_chain", "dates": ["2024-10-01"], "reason": "security"}})[
        "a"
    ]
    again = {"dag_id": "bf_chain", "dates": ["2024-10-01"], "task_regex": "^b$", "reprocess": "all"}
    second = run_all(airflow, {"b": again})["b"]
    assert first.state == second.state == "success"

    leaks = [
        str(path)
        for path in airflow.home.joinpath("logs").rglob("*")
        if path.is_file() and secret in path.read_text(errors="replace")
    ]
    assert leaks == []
    for out in (first, second):
        for key in (XCom.REQUEST, XCom.PLANS, XCom.EXECUTION, XCom.RUN_IDS):
            assert secret not in str(airflow.xcom(CONTROLLER_DAG_ID, out.run_id, Task.PLAN, key=key))
        assert secret not in str(out.report)
    runs = airflow._json("GET", "/api/v2/dags/bf_chain/dagRuns", params={"limit": 100})["dag_runs"]
    assert all(secret not in str(r.get("note")) and secret not in str(r.get("conf")) for r in runs)


def test_template_syntax_in_user_input_is_stored_inert(airflow, figures):
    """Jinja in reason or conf is never rendered: it would otherwise read connections and Variables."""
    probe = "{{ conn.airflow_api.password }} {{ var.value.bf_fail_dates }}"
    request = {"dag_id": "bf_chain", "dates": ["2024-10-02"], "reason": probe, "conf": {"q": probe}}
    out = run_all(airflow, {"t": request})["t"]
    runs = airflow._json(
        "GET",
        "/api/v2/dags/bf_chain/dagRuns",
        params={"logical_date_gte": "2024-10-02T00:00:00Z", "logical_date_lte": "2024-10-02T00:00:00Z"},
    )["dag_runs"]
    (run,) = runs
    inert = (
        out.state == "success"
        and out.report["reason"] == probe
        and run["conf"] == {"q": probe}
        and probe in (run.get("note") or "")
        and airflow.password not in str(run) + str(out.report)
    )
    figures.bad_input("hostile: Jinja reading a connection and a Variable, in reason and conf", inert)
    assert out.state == "success", out.report
    assert out.report["reason"] == probe and run["conf"] == {"q": probe}
    assert probe in run["note"] and airflow.password not in str(run) + str(out.report)
