"""REST credentials live only in the ``airflow_api`` connection: never in conf, logs, XCom or notes."""

from __future__ import annotations

import pytest
from test_controller import CONTROLLER, run_all

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
        for key in ("request", "plans", "gate", "run_ids"):
            assert secret not in str(airflow.xcom(CONTROLLER, out.run_id, "plan", key=key))
        assert secret not in str(out.report)
    runs = airflow._json("GET", "/api/v2/dags/bf_chain/dagRuns", params={"limit": 100})["dag_runs"]
    assert all(secret not in str(r.get("note")) and secret not in str(r.get("conf")) for r in runs)
