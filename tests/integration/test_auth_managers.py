"""Both auth managers serve the suite: FAB's per-DAG roles on PostgreSQL, SimpleAuthManager on SQLite.

Roles, users and tokens come only from ``LocalAirflow``'s helpers (``create_role``, ``create_user``,
``token_for``, ``api(..., token=...)``); the rights are checked with plain REST calls.
"""

from __future__ import annotations

import pytest

from backfill_controller.client.rest import ApiError

TARGET = "bf_daily"
OTHER = "bf_chain"
#: What a user needs to read DAG X and trigger its runs, and nothing on any other DAG.
ONE_DAG_TRIGGER = [
    ("can_read", f"DAG:{TARGET}"),
    ("can_edit", f"DAG:{TARGET}"),  # POST dagRuns also asks for edit on the DAG itself
    ("can_create", "DAG Runs"),
    ("can_read", "DAG Runs"),
]


def _airflow_with(request: pytest.FixtureRequest, auth_manager_name: str, wanted: str):
    """The session's Airflow, started only when it runs the wanted auth manager."""
    if auth_manager_name != wanted:
        pytest.skip(f"needs --auth-manager={wanted} (this run: {auth_manager_name})")
    return request.getfixturevalue("airflow")


@pytest.mark.backend("postgres")
def test_a_fab_role_on_one_dag_triggers_that_dag_and_is_refused_on_another(request, auth_manager_name):
    airflow = _airflow_with(request, auth_manager_name, "fab")
    airflow.create_role("bf_daily_trigger", ONE_DAG_TRIGGER)
    airflow.create_user("daily_only", "Daily-0nly-pw", ["bf_daily_trigger"])
    token = airflow.token_for("daily_only", "Daily-0nly-pw")

    body = {"logical_date": None, "conf": {}, "dag_run_id": "auth-probe"}
    allowed = airflow.api("POST", f"/api/v2/dags/{TARGET}/dagRuns", json=body, token=token)
    refused = airflow.api("POST", f"/api/v2/dags/{OTHER}/dagRuns", json=body, token=token)
    try:
        assert allowed.status_code == 200, allowed.text
        assert refused.status_code == 403, refused.text
        assert airflow.api("GET", f"/api/v2/dags/{TARGET}", token=token).status_code == 200
        assert airflow.api("GET", f"/api/v2/dags/{OTHER}", token=token).status_code == 403
        listed = airflow.api("GET", "/api/v2/dags", params={"limit": 100}, token=token).json()["dags"]
        assert [dag["dag_id"] for dag in listed] == [TARGET]
    finally:  # the probe run is no test target's business
        for dag_id, resp in ((TARGET, allowed), (OTHER, refused)):
            if resp.status_code == 200:
                airflow.api("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/auth-probe")


@pytest.mark.backend("postgres")
def test_fab_refuses_a_wrong_password_and_roles_on_unknown_resources(request, auth_manager_name):
    airflow = _airflow_with(request, auth_manager_name, "fab")
    with pytest.raises(ApiError, match="HTTP 401"):
        airflow.token_for(airflow.username, airflow.password + "x")
    with pytest.raises(ApiError, match="HTTP 400"):
        airflow.create_role("typo", [("can_read", "DAG:no_such_dag")])


@pytest.mark.backend("sqlite")
def test_simple_auth_manager_has_fixed_roles_and_users_fixed_at_start(request, auth_manager_name):
    airflow = _airflow_with(request, auth_manager_name, "simple")
    assert airflow.api("GET", f"/api/v2/dags/{OTHER}", token=airflow.token()).status_code == 200
    with pytest.raises(ApiError, match="HTTP 401"):
        airflow.token_for(airflow.username, airflow.password + "x")
    with pytest.raises(NotImplementedError):
        airflow.create_role("bf_daily_trigger", ONE_DAG_TRIGGER)
    with pytest.raises(RuntimeError, match="before start"):
        airflow.create_user("late", "late-pw", ["viewer"])
