"""The Airflow internals :mod:`backfill_controller.airflow_internals` relies on still look as it expects.

Each test names the installed function or model the module calls; a change in a new Airflow fails here
instead of in a user's backfill.
"""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowRuntimeError, DagRunTriggerException, ErrorType
from airflow.sdk.execution_time.comms import ErrorResponse, OKResponse, TriggerDagRun

from backfill_controller.airflow_internals import (
    LOCK_RUNS_READ,
    TriggerRefused,
    lock_runs_when_read,
    mapped_states,
    refusal,
    run_end_date,
    send_trigger,
)
from backfill_controller.contract import TARGET_RUN_PREFIX


def parameters(function) -> set[str]:
    return set(inspect.signature(function).parameters)


def test_the_rest_trigger_route_takes_what_create_run_passes():
    from airflow.api_fastapi.core_api.routes.public.dag_run import trigger_dag_run

    assert {"dag_id", "body", "dag_bag", "user", "session", "request"} <= parameters(trigger_dag_run)


def test_the_trigger_body_takes_a_run_id_a_null_logical_date_and_a_conf():
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody

    body = TriggerDAGRunPostBody(dag_run_id="manual__x", logical_date=None, conf={"dag_id": "d"})
    assert (body.dag_run_id, body.logical_date, body.conf) == ("manual__x", None, {"dag_id": "d"})


def test_the_execution_apis_trigger_creates_runs_with_what_create_target_run_passes():
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.api_fastapi.execution_api.routes import dag_runs

    passed = {"dag_id", "run_id", "run_type", "conf", "logical_date", "run_after", "triggered_by"}
    passed |= {"triggering_user_name", "replace_microseconds", "note", "session"}
    assert passed <= parameters(trigger_dag)
    assert dag_runs.trigger_dag is trigger_dag  # the function the trigger task's runs are made with


def test_marking_a_run_failed_takes_the_serialized_dag_a_run_id_and_a_session():
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed

    assert {"dag", "run_id", "commit", "session"} <= parameters(set_dag_run_state_to_failed)


def test_the_patch_route_reads_its_run_before_it_writes_the_runs_task_instances():
    """lock_runs_when_read locks the run at the route's first read of it, before the task instances
    the route writes first and the run it writes last."""
    from airflow.api.common import mark_tasks
    from airflow.api_fastapi.core_api.routes.public import dag_run

    route = inspect.getsource(dag_run.patch_dag_run)
    assert route.index("select(DagRun)") < route.index("patch_dag_run_state(")
    terminal = inspect.getsource(mark_tasks._set_dag_run_terminal_state)
    assert terminal.index("ti.set_state(") < terminal.index("_set_dag_run_state(")


class _Read(Exception):
    pass


def statement_run(statement: Any, lock: bool) -> str:
    """The SQL (PostgreSQL's) a session runs for ``statement``, with LOCK_RUNS_READ set to ``lock``."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.orm import Session

    seen = []

    def catch(state: Any) -> None:
        seen.append(state.statement)
        raise _Read

    lock_runs_when_read()
    lock_runs_when_read()  # registered once
    event.listen(Session, "do_orm_execute", catch)
    reset = LOCK_RUNS_READ.set(lock)
    try:
        with Session(create_engine("sqlite://")) as session, pytest.raises(_Read):
            session.execute(statement)
    finally:
        LOCK_RUNS_READ.reset(reset)
        event.remove(Session, "do_orm_execute", catch)
    return str(seen[0].compile(dialect=postgresql.dialect()))


def test_while_set_a_read_of_whole_runs_locks_them_and_nothing_else():
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import func, select
    from sqlalchemy.orm import joinedload

    runs = select(DagRun).filter_by(dag_id="d", run_id="r").options(joinedload(DagRun.dag_model))
    assert statement_run(runs, lock=True).endswith("FOR UPDATE OF dag_run")
    assert "FOR UPDATE" not in statement_run(runs, lock=False)
    for other in (select(DagRun.run_id), select(func.count()).select_from(DagRun), select(TaskInstance)):
        assert "FOR UPDATE" not in statement_run(other, lock=True)


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


# --- in a task: send_trigger, refusal, run_end_date, mapped_states -------------------------------

COMMS = "airflow.sdk.execution_time.task_runner.SUPERVISOR_COMMS"
JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)
DENIED = "Dag with dag_id 'sales' does not allow operator-triggered runs"


def trigger_request(**overrides: Any) -> DagRunTriggerException:
    """What ``TriggerDagRunOperator.execute`` raises, as the controller's chunks catch it."""
    fields = {
        "trigger_dag_id": "sales",
        "dag_run_id": f"{TARGET_RUN_PREFIX}2024-01-01T00:00:00+00:00",
        "conf": {"region": "eu"},
        "logical_date": JAN_1,
        "run_after": JAN_1 + timedelta(days=1),
        "reset_dag_run": False,
        "skip_when_already_exists": False,
        "wait_for_completion": False,
        "allowed_states": ["success"],
        "failed_states": ["failed"],
        "poke_interval": 60,
        "deferrable": False,
        "note": "backfill_controller (ada): outage",
    }
    return DagRunTriggerException(**{**fields, **overrides})


def server_error(status: int | None, body: Any) -> AirflowRuntimeError:
    """The error the supervisor sends back when the API server refuses a request (see
    :func:`test_the_supervisor_hands_an_api_refusal_to_the_task_with_its_status_and_body`)."""
    detail = {"status_code": status, "message": f"Server returned error {status}", "detail": body}
    return AirflowRuntimeError(error=ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail=detail))


def test_the_trigger_message_takes_every_field_send_trigger_fills():
    message = TriggerDagRun(
        dag_id="sales",
        run_id="r",
        logical_date=JAN_1,
        run_after=JAN_1,
        conf={"a": 1},
        reset_dag_run=True,
        note="n",
    )
    assert (message.dag_id, message.run_id, message.conf, message.reset_dag_run, message.note) == (
        "sales",
        "r",
        {"a": 1},
        True,
        "n",
    )
    assert (message.logical_date, message.run_after) == (JAN_1, JAN_1)
    assert {"dag_id", "run_id", "logical_date", "run_after", "conf", "reset_dag_run", "note"} <= set(
        TriggerDagRun.model_fields
    )


def test_the_trigger_exception_carries_what_send_trigger_reads():
    request = trigger_request()
    for name in (
        "trigger_dag_id",
        "dag_run_id",
        "logical_date",
        "run_after",
        "conf",
        "reset_dag_run",
        "note",
    ):
        assert hasattr(request, name), name


def source_of(function: Any) -> str:
    """A function's source with every run of whitespace made one space."""
    return " ".join(inspect.getsource(function).split())


def test_the_supervisor_sends_the_trigger_message_on_to_the_api_client_as_is():
    """3.3 calls it in ``ActivitySubprocess._handle_request``, 3.4 in a handler of its own."""
    from airflow.sdk.execution_time import supervisor

    call = (
        "self.client.dag_runs.trigger( msg.dag_id, msg.run_id, msg.conf, msg.logical_date, msg.run_after,"
        " msg.reset_dag_run, msg.note )"
    )
    assert call in source_of(supervisor)


def test_the_api_client_answers_a_409_with_an_error_response_it_does_not_raise():
    import httpx
    from airflow.sdk.api.client import DagRunOperations, ServerResponseError

    request = httpx.Request("POST", "http://api/execution/dag-runs/sales/r")
    response = httpx.Response(409, json={"detail": {"reason": "already_exists"}}, request=request)
    client = mock.Mock()
    client.post.side_effect = ServerResponseError.from_response(response)

    answer = DagRunOperations(client).trigger("sales", "r", {}, JAN_1, JAN_1, False, None)

    assert isinstance(answer, ErrorResponse) and answer.error is ErrorType.DAGRUN_ALREADY_EXISTS


def test_the_supervisor_hands_an_api_refusal_to_the_task_with_its_status_and_body():
    from airflow.sdk.execution_time.supervisor import WatchedSubprocess

    source = source_of(WatchedSubprocess.handle_requests)
    assert "except ServerResponseError as e:" in source
    assert "error_details = e.response.json()" in source
    for line in (
        "error=ErrorType.API_SERVER_ERROR",
        '"status_code": e.response.status_code',
        '"message": str(e)',
        '"detail": error_details',
    ):
        assert line in source, line


def test_a_runtime_error_carries_the_error_response():
    response = ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 400})
    error = AirflowRuntimeError(error=response)
    assert error.error is response and error.error.detail == {"status_code": 400}


def test_send_trigger_sends_one_trigger_message_and_answers_none_when_done():
    with mock.patch(COMMS, create=True) as comms:
        comms.send.return_value = OKResponse(ok=True)
        assert send_trigger(trigger_request()) is None
    (message,), _ = comms.send.call_args
    assert isinstance(message, TriggerDagRun)
    assert (message.dag_id, message.run_id) == ("sales", f"{TARGET_RUN_PREFIX}2024-01-01T00:00:00+00:00")
    assert (message.logical_date, message.run_after) == (JAN_1, JAN_1 + timedelta(days=1))
    assert (message.conf, message.reset_dag_run) == ({"region": "eu"}, False)
    assert message.note == "backfill_controller (ada): outage"


def test_send_trigger_answers_a_conflict_as_a_409():
    with mock.patch(COMMS, create=True) as comms:
        comms.send.return_value = ErrorResponse(error=ErrorType.DAGRUN_ALREADY_EXISTS)
        refused = send_trigger(trigger_request())
    assert refused is not None and refused.status == 409
    assert "DAGRUN_ALREADY_EXISTS" in refused.message


def test_send_trigger_answers_a_refusal_with_airflows_status_and_message():
    body = {"detail": {"reason": "denied_run_type", "message": DENIED}}
    with mock.patch(COMMS, create=True) as comms:
        comms.send.side_effect = server_error(400, body)
        assert send_trigger(trigger_request()) == TriggerRefused(400, DENIED)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"detail": {"reason": "denied_run_type", "message": DENIED}}, TriggerRefused(400, DENIED)),
        (400, {"detail": {"reason": "import_errors"}}, TriggerRefused(400, "import_errors")),
        (422, {"detail": "Unprocessable"}, TriggerRefused(422, "Unprocessable")),
        (500, None, TriggerRefused(500, "Server returned error 500")),
        (None, None, TriggerRefused(500, "Server returned error None")),
    ],
    ids=["a refusal with a message", "a reason only", "a plain detail", "a body-less 500", "no status"],
)
def test_refusal_reads_the_status_and_airflows_message(status, body, expected):
    assert refusal(server_error(status, body)) == expected


def test_fetch_dag_run_is_there_with_keyword_dag_id_and_run_id():
    from airflow.sdk.execution_time.comms import DagRunResult, _fetch_dag_run

    signature = inspect.signature(_fetch_dag_run)
    assert {"dag_id", "run_id"} <= set(signature.parameters)
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in signature.parameters.values())
    assert {"state", "end_date"} <= set(DagRunResult.model_fields)


def test_run_end_date_reads_the_runs_state_and_end_date():
    from airflow.utils.state import DagRunState

    ended = datetime(2024, 1, 2, 3, tzinfo=UTC)
    run = mock.Mock(state=DagRunState.SUCCESS, end_date=ended)
    with mock.patch("airflow.sdk.execution_time.comms._fetch_dag_run", return_value=run) as fetch:
        assert run_end_date("sales", "r") == ("success", ended)
    fetch.assert_called_once_with(dag_id="sales", run_id="r")


def test_task_states_are_keyed_task_id_underscore_map_index_for_mapped_tasks():
    """:func:`mapped_states` parses this key: the execution API's route builds it."""
    from airflow.api_fastapi.execution_api.routes import task_instances

    source = source_of(task_instances)
    # 3.3: {f"{task.task_id}_{task.map_index}": task.state} unless task.map_index < 0;
    # 3.4: f"{task.task_id}_{public_index}" unless public_index < 0.
    assert re.search(r'f"\{task\.task_id\}_\{(task\.map_index|public_index)\}"', source)
    assert re.search(r"(task\.map_index|public_index) < 0", source)
    assert mapped_states({"trigger_0": "success", "trigger_11": "up_for_retry", "plan": "success"}) == {
        0: "success",
        11: "up_for_retry",
    }


def test_the_task_sdk_reads_what_the_controllers_tasks_ask_for():
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    assert {"dag_id", "task_ids", "logical_dates", "run_ids"} <= parameters(RTI.get_task_states)
    assert {"dag_id", "run_ids", "states"} <= parameters(RTI.get_dr_count)
    assert {"dag_id", "run_id"} <= parameters(RTI.get_dagrun_state)


def test_the_operator_keeps_its_link_per_run_only_through_the_task_instance_in_its_context():
    """``keep_trigger_link`` pushes the XCom the operator pushes; without ``ti`` it pushes none."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    from backfill_controller.airflow_internals import keep_trigger_link

    operator = TriggerDagRunOperator(task_id="t", trigger_dag_id="sales", trigger_run_id="r1")
    ti = mock.Mock()
    with pytest.raises(DagRunTriggerException):
        TriggerDagRunOperator.execute.__wrapped__(operator, {"ti": ti})
    (pushed,) = ti.xcom_push.call_args_list
    with pytest.raises(DagRunTriggerException):
        TriggerDagRunOperator.execute.__wrapped__(operator, {})
    ours = mock.Mock()
    keep_trigger_link(ours, "sales", "r1")
    assert ours.xcom_push.call_args_list == [pushed]
