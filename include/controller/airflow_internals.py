"""The api-server's uses of Airflow that are not its public REST, Task SDK or plugin interfaces.

Checked against apache-airflow 3.3.2 and 3.4.0b2. ``tests/unit/test_airflow_internals.py`` fails
when a signature used here changes.

* :func:`create_run` creates a run of a DAG exactly as ``POST /api/v2/dags/{dag_id}/dagRuns``
  does for the calling user (``triggering_user_name``, ``triggered_by`` REST API or UI, Params
  validated), by calling that route's own function (``trigger_dag_run`` in
  ``airflow/api_fastapi/core_api/routes/public/dag_run.py``) inside the plugin's request.
* :func:`fail_runs` marks runs failed as that route's PATCH does
  (``airflow.api.common.mark_tasks.set_dag_run_state_to_failed``), inside the listener's request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session


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


def fail_runs(session: Session, dag_id: str, run_ids: list[str]) -> None:
    """Mark these runs of ``dag_id`` failed as ``PATCH .../dagRuns/{run_id}`` does (their running task
    instances failed, the others skipped), in ``session``, without firing listeners again."""
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    bag = DBDagBag()
    for run in session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(run_ids))):
        dag = bag.get_dag_for_run(run, session=session)
        if dag is not None:
            set_dag_run_state_to_failed(dag=dag, run_id=run.run_id, commit=True, session=session)
