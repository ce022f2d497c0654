"""Notifications end to end: a backfill's end reaches the deployment's notifiers (real BaseNotifier
subclasses called by the report task), chosen per request or by the deployment default.

The test deployment (tests/conftest.py) defines ``everything`` (every event; the default) and
``failures`` (failure and budget_exhausted only); both append to ``notifications.jsonl`` in
AIRFLOW_HOME what they were told, rendered.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from conftest import NOTIFICATIONS
from test_controller import run_all, set_failing

from backfill_controller.client.rest import ApiError
from backfill_controller.contract import CONTROLLER_DAG_ID

pytestmark = pytest.mark.backend("sqlite")

TARGET = "bf_hourly"
GOOD = ["2024-08-01T00:00:00", "2024-08-01T01:00:00"]
BAD = ["2024-08-02T00:00:00", "2024-08-02T01:00:00", "2024-08-02T02:00:00"]


@pytest.fixture(scope="module")
def told(airflow):
    """{scenario: [records the notifiers wrote for its controller run]}."""
    set_failing(airflow, {TARGET: ["2024-08-02"]})
    try:
        outcomes = run_all(
            airflow,
            {
                "default": {"dag_id": TARGET, "dates": GOOD[:1], "reason": "{{ 7 * 7 }} {% raw %}"},
                "failure": {"dag_id": TARGET, "dates": BAD[:1], "notify": ["failures"]},
                "budget": {
                    "dag_id": TARGET,
                    "dates": BAD[1:],
                    "max_failed_dates": 1,
                    "max_active_runs": 1,
                    "notify": ["failures", "everything"],
                },
                "nobody": {"dag_id": TARGET, "dates": GOOD[1:], "notify": []},
            },
        )
    finally:
        set_failing(airflow, {})
    lines = (airflow.home / NOTIFICATIONS).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return {
        name: (out, [r for r in records if r["backfill"]["controller_run_id"] == out.run_id])
        for name, out in outcomes.items()
    }


def test_by_default_the_deployment_default_is_told_with_counts_and_a_link(airflow, told):
    out, records = told["default"]
    assert out.state == "success" and out.report["notified"] == ["everything"]
    (record,) = records
    assert record["subject"] == f"Backfill of {TARGET} succeeded: 1 dates"
    assert record["backfill"]["counts"]["succeeded"] == 1
    run_page = f"{airflow.url}/dags/backfill_controller/runs/{quote(out.run_id, safe='')}"
    assert record["backfill"]["link"] == run_page


def test_user_text_reaches_the_notifier_as_text_never_as_a_template(told):
    _, (record,) = told["default"]
    assert "Reason: {{ 7 * 7 }} {% raw %}" in record["body"]


def test_a_failure_tells_the_requested_notifier_the_failed_dates(told):
    out, records = told["failure"]
    assert out.state == "failed"
    (record,) = records  # the request named only "failures": the default is not told
    assert record["subject"] == f"FAILED {TARGET}: failure"
    assert record["backfill"]["failed_dates"] == ["2024-08-02T00:00:00+00:00"]
    assert "Failed dates: 2024-08-02T00:00:00+00:00" in record["body"]


def test_an_exhausted_failure_budget_is_its_own_event(told):
    out, records = told["budget"]
    assert out.state == "failed"
    assert sorted(r["subject"] for r in records) == [
        f"Backfill of {TARGET} stopped: 1 dates failed, 1 not started (max_failed_dates)",
        f"FAILED {TARGET}: budget_exhausted",
    ]


def test_an_empty_list_tells_nobody(told):
    out, records = told["nobody"]
    assert out.state == "success" and records == [] and out.report["notified"] == []


def test_a_request_cannot_name_a_class_only_the_deployments_notifiers(airflow):
    conf = {"dag_id": TARGET, "dates": GOOD[1:], "notify": ["my.module.Evil"]}
    with pytest.raises(ApiError) as refused:
        airflow.trigger(CONTROLLER_DAG_ID, conf)
    response = refused.value.response
    assert response.status_code == 400
    assert "notify" in response.text and "['everything', 'failures']" in response.text
