"""The Airflow internals :mod:`include.controller.airflow_internals` relies on still look as it expects.

Each test names the installed function or model the module calls; a change in a new Airflow fails here
instead of in a user's backfill.
"""

from __future__ import annotations

import inspect

import pytest


def parameters(function) -> set[str]:
    return set(inspect.signature(function).parameters)


def test_the_rest_trigger_route_takes_what_create_run_passes():
    from airflow.api_fastapi.core_api.routes.public.dag_run import trigger_dag_run

    assert {"dag_id", "body", "dag_bag", "user", "session", "request"} <= parameters(trigger_dag_run)


def test_the_trigger_body_takes_a_run_id_a_null_logical_date_and_a_conf():
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody

    body = TriggerDAGRunPostBody(dag_run_id="manual__x", logical_date=None, conf={"dag_id": "d"})
    assert (body.dag_run_id, body.logical_date, body.conf) == ("manual__x", None, {"dag_id": "d"})


def test_marking_a_run_failed_takes_the_serialized_dag_a_run_id_and_a_session():
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed

    assert {"dag", "run_id", "commit", "session"} <= parameters(set_dag_run_state_to_failed)


@pytest.mark.parametrize("method", ["get_dag_for_run", "get_latest_version_of_dag"])
def test_the_db_dag_bag_reads_serialized_dags(method):
    from airflow.models.dagbag import DBDagBag

    assert "session" in parameters(getattr(DBDagBag, method))


def test_runs_record_their_requester_and_type():
    from airflow.models.dagrun import DagRun

    for column in ("triggering_user_name", "run_type", "conf", "state"):
        assert hasattr(DagRun, column), column


def test_auth_managers_answer_per_dag_questions_with_these_arguments():
    from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    assert {"method", "access_entity", "details", "user"} <= parameters(BaseAuthManager.is_authorized_dag)
    assert {"RUN", "TASK_INSTANCE"} <= {e.name for e in DagAccessEntity}
    assert DagDetails(id="d").id == "d"


def test_plugins_may_add_root_middlewares_and_listeners():
    from airflow.plugins_manager import AirflowPlugin

    assert hasattr(AirflowPlugin, "fastapi_root_middlewares") and hasattr(AirflowPlugin, "listeners")
