"""Every use of Airflow that is not its public REST, Task SDK or plugin interface, in one module.

Checked against apache-airflow 3.3.2 (task-sdk 1.3.2) and 3.4.0b2. ``tests/unit/test_airflow_internals.py``
fails when a name, signature or message shape used here changes.

In the api-server:

* :func:`create_run` creates a run of a DAG exactly as ``POST /api/v2/dags/{dag_id}/dagRuns``
  does for the calling user (``triggering_user_name``, ``triggered_by`` REST API or UI, Params
  validated), by calling that route's own function (``trigger_dag_run`` in
  ``airflow/api_fastapi/core_api/routes/public/dag_run.py``) inside the plugin's request.
* :func:`create_target_run` creates a target run as the Execution API's ``trigger_dag_run``
  (``airflow/api_fastapi/execution_api/routes/dag_runs.py``) does for a ``TriggerDagRunOperator``
  of a run triggered by the requester: the front door starts a backfill's first runs with it.
* :func:`mark_unstarted_upstream_failed` marks one task of some runs ``upstream_failed`` where it
  has not started (the ``TaskInstance`` model), so a cancelled controller run stays failed.
* :func:`fail_runs` marks runs failed as that route's PATCH does
  (``airflow.api.common.mark_tasks.set_dag_run_state_to_failed``), inside the listener's request,
  each run's row locked before its task instances are written.
* :func:`lock_runs_when_read` makes the DAG runs an ORM query reads locked (``FOR UPDATE``) while
  :data:`LOCK_RUNS_READ` is set: that route's PATCH reads its run first, so on PostgreSQL it then
  locks the run before it writes the run's task instances, the order the scheduler takes them in
  (it locks the runs it examines, then their task instances). In the route's own order (task
  instances, then the run) a scheduler examining the run at that moment deadlocks with it.

In a task (for speed: one supervisor round trip instead of a REST call with credentials):

* :func:`send_trigger` asks for a run as the task runner does with the ``DagRunTriggerException``
  that ``TriggerDagRunOperator.execute`` raises (``TriggerDagRun`` over ``SUPERVISOR_COMMS``),
  but returns Airflow's answer instead of failing the task, so one refused date does not fail
  its whole chunk.
* :func:`keep_trigger_link` keeps the "Triggered DAG" extra link of a trigger task, the XCom
  ``TriggerDagRunOperator.execute`` pushes for every run it triggers (the operator is called
  without its task instance, and the chunk keeps the link once, for the last run it started).
* :func:`run_end_date` reads one run's state and end date (``_fetch_dag_run``), to tell a run
  cleared by an earlier try from one still as planned.
* :func:`mapped_states` reads ``get_task_states``' answer for a mapped task, whose keys are
  ``<task_id>_<map_index>``.

Not listed here, being public: the Task SDK's calls on a task instance (``get_dr_count``,
``get_dagrun_state``, ``get_task_states``), which triggers reach through
``RuntimeTaskInstance`` as Airflow's own ``DagStateTrigger`` does, and the plugin's FastAPI app
reading the metadata database through Airflow's models and ``SessionDep``.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, event
from sqlalchemy.orm import ORMExecuteState, Session

#: Set for the requests whose DAG runs are locked when read (:func:`lock_runs_when_read`).
LOCK_RUNS_READ: ContextVar[bool] = ContextVar("backfill_controller_lock_runs_read", default=False)


def create_run(
    session: Session, dag_id: str, conf: dict[str, Any], *, user: Any, request: Any, run_id: str | None = None
) -> Any:
    """Create a manual run of ``dag_id`` with ``conf`` for ``user``; returns the ``DagRun``.

    Raises ``fastapi.HTTPException`` as the REST API answers (400: Params refuse the conf).
    """
    from airflow.api_fastapi.core_api.datamodels.dag_run import TriggerDAGRunPostBody
    from airflow.api_fastapi.core_api.routes.public.dag_run import trigger_dag_run
    from airflow.models.dagbag import DBDagBag

    body = TriggerDAGRunPostBody(dag_run_id=run_id, logical_date=None, conf=conf)
    return trigger_dag_run(
        dag_id=dag_id, body=body, dag_bag=DBDagBag(), user=user, session=session, request=request
    )


def create_target_run(
    session: Session,
    dag_id: str,
    run_id: str,
    *,
    logical_date: Any,
    run_after: Any,
    conf: dict[str, Any],
    note: str,
    requester: str | None,
) -> None:
    """Create run ``run_id`` of ``dag_id`` in ``session`` exactly as the controller's ``trigger``
    task would (an operator-triggered run of the requester's). Raises what ``trigger_dag`` raises
    (``DagRunAlreadyExists``, ``ValueError``, a database error) with nothing flushed."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType, DagRunType

    with session.begin_nested():
        trigger_dag(
            dag_id=dag_id,
            run_id=run_id,
            run_type=DagRunType.OPERATOR_TRIGGERED,
            conf=conf,
            logical_date=logical_date,
            run_after=run_after,
            triggered_by=DagRunTriggeredByType.OPERATOR,
            triggering_user_name=requester,
            replace_microseconds=False,
            note=note,
            session=session,
        )


def fail_runs(session: Session, dag_id: str, run_ids: list[str]) -> None:
    """Mark these runs of ``dag_id`` failed as ``PATCH .../dagRuns/{run_id}`` does (their running task
    instances failed, the others skipped), in ``session``, without firing listeners again."""
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    bag = DBDagBag()
    runs = select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids)).order_by(DagRun.id)
    for run in session.scalars(runs.with_for_update(of=DagRun)):
        dag = bag.get_dag_for_run(run, session=session)
        if dag is not None:
            set_dag_run_state_to_failed(dag=dag, run_id=run.run_id, commit=True, session=session)


def lock_runs_when_read() -> None:
    """From now on, in this process, ORM queries that read whole DAG runs lock them (``FOR UPDATE OF
    dag_run``; nothing on SQLite, which locks the whole database) while :data:`LOCK_RUNS_READ` is set."""
    if not event.contains(Session, "do_orm_execute", _lock_runs_read):
        event.listen(Session, "do_orm_execute", _lock_runs_read)


def _lock_runs_read(state: ORMExecuteState) -> None:
    if not LOCK_RUNS_READ.get() or not state.is_select or state.is_column_load or state.is_relationship_load:
        return
    from airflow.models.dagrun import DagRun

    statement = state.statement
    if not isinstance(statement, Select):
        return
    described = statement.column_descriptions
    if len(described) == 1 and described[0].get("type") is DagRun:
        state.statement = statement.with_for_update(of=DagRun)


def mark_unstarted_upstream_failed(session: Session, dag_id: str, task_id: str, run_ids: list[str]) -> None:
    """Mark task ``task_id`` of these runs of ``dag_id`` ``upstream_failed`` where it has not
    started (no state, scheduled, queued, waiting for a retry or a reschedule, or skipped)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import TaskInstanceState as TI
    from sqlalchemy import update

    unstarted = [TI.SCHEDULED, TI.QUEUED, TI.UP_FOR_RETRY, TI.UP_FOR_RESCHEDULE, TI.SKIPPED]
    session.execute(
        update(TaskInstance)
        .where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.task_id == task_id,
            TaskInstance.run_id.in_(run_ids),
            TaskInstance.state.is_(None) | TaskInstance.state.in_(unstarted),
        )
        .values(state=TI.UPSTREAM_FAILED)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class TriggerRefused:
    """Airflow's answer to a refused run: its HTTP status (409: a run with this run_id or logical
    date exists) and its message."""

    status: int
    message: str


def send_trigger(request: Any) -> TriggerRefused | None:
    """Create (or with ``reset_dag_run`` clear) the run ``DagRunTriggerException`` ``request``
    asks for; None when done, the refusal when Airflow refused it.

    A 5xx is returned too: a run with the same logical date can make the api-server fail that way.
    """
    from airflow.sdk.exceptions import AirflowRuntimeError
    from airflow.sdk.execution_time.comms import ErrorResponse, TriggerDagRun
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    message = TriggerDagRun(
        dag_id=request.trigger_dag_id,
        run_id=request.dag_run_id,
        logical_date=request.logical_date,
        run_after=request.run_after,
        conf=request.conf,
        reset_dag_run=request.reset_dag_run,
        note=request.note,
    )
    try:
        answer = SUPERVISOR_COMMS.send(message)
    except AirflowRuntimeError as error:
        return refusal(error)
    if isinstance(answer, ErrorResponse):  # the client's answer to a 409
        return TriggerRefused(409, f"a run of {request.trigger_dag_id} exists already ({answer.error.value})")
    return None


def keep_trigger_link(ti: Any, dag_id: str, run_id: str) -> None:
    """Point the trigger task's "Triggered DAG" link at ``run_id``, as the operator's own
    ``_trigger_dag_af_3`` does (``TriggerDagRunLink.xcom_key``, ``build_airflow_dagrun_url``)."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunLink
    from airflow.utils.helpers import build_airflow_dagrun_url

    url = build_airflow_dagrun_url(dag_id=dag_id, run_id=run_id)
    ti.xcom_push(key=TriggerDagRunLink().xcom_key, value=url)


def refusal(error: Any) -> TriggerRefused:
    """The refusal an ``AirflowRuntimeError`` from the supervisor carries (status 500 when it names
    none)."""
    detail = error.error.detail or {}
    status = detail.get("status_code")
    if not isinstance(status, int):
        status = 500
    body = detail.get("detail")
    inner = body.get("detail") if isinstance(body, dict) else None
    text = (inner.get("message") or inner.get("reason")) if isinstance(inner, dict) else inner
    return TriggerRefused(status, str(text or detail.get("message") or error))


def run_end_date(dag_id: str, run_id: str) -> tuple[str, Any]:
    """``(state, end_date)`` of one run (``end_date`` a datetime or None)."""
    from airflow.sdk.execution_time.comms import _fetch_dag_run

    run = _fetch_dag_run(dag_id=dag_id, run_id=run_id)
    return str(getattr(run.state, "value", run.state)), run.end_date


def mapped_states(states: dict[str, Any]) -> dict[int, str | None]:
    """``{map_index: state}`` from ``get_task_states``' ``{"<task_id>_<map_index>": state}`` for one
    mapped task.

    >>> mapped_states({"trigger_0": "success", "trigger_12": None})
    {0: 'success', 12: None}
    """
    found: dict[int, str | None] = {}
    for key, state in states.items():
        index = key.rsplit("_", 1)[-1]
        if index.isdigit():
            found[int(index)] = None if state is None else str(getattr(state, "value", state))
    return found
