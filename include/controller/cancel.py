"""Cancelling a backfill: its target runs still queued are marked failed, as cancelling a native
backfill does (``PATCH /api/v2/backfills/{id}/cancel`` fails the backfill's queued runs).

A backfill is cancelled by marking its controller run failed by hand (the UI's "Mark as failed",
or ``PATCH /api/v2/dags/backfill_controller/dagRuns/{run_id}`` with ``{"state": "failed"}``).
Airflow then fires the listener hook ``on_dag_run_failed`` in the api-server, with a message
saying the state was set manually; the plugin registers this module as a listener. Runs that are
running finish; runs still queued (the reserve kept behind a target that holds its runs back,
``include.backfill.plan.feeding``) would otherwise start later, after the backfill was cancelled.
A controller run that fails by itself (a failed date, a timeout) changes nothing here.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from airflow.listeners import hookimpl
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from sqlalchemy import update
from sqlalchemy.engine import CursorResult

from include.controller.ui import CONTROLLER_DAG_ID, plan_xcoms

log = logging.getLogger(__name__)

#: Part of the message Airflow passes to ``on_dag_run_failed`` when a user set the state.
MANUALLY_SET = "manually set"


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    if getattr(dag_run, "dag_id", None) != CONTROLLER_DAG_ID or MANUALLY_SET not in (msg or ""):
        return
    try:
        failed = fail_queued_runs(dag_run.id)
    except Exception:  # a listener must never break the state change it reports
        log.exception("could not fail the queued runs of cancelled backfill %s", dag_run.run_id)
        return
    log.info("backfill %s cancelled: %d queued target run(s) marked failed", dag_run.run_id, failed)


def fail_queued_runs(controller_run_pk: int) -> int:
    """Mark failed the target runs of one controller run that are still queued; how many."""
    with create_session() as session:
        facts = plan_xcoms(session, [controller_run_pk], ["gate", "run_ids"]).get(controller_run_pk, {})
        gate, run_ids = facts.get("gate") or {}, facts.get("run_ids") or []
        if not gate.get("target_dag_id") or not run_ids:
            return 0
        result = cast(
            "CursorResult[Any]",
            session.execute(
                update(DagRun)
                .where(
                    DagRun.dag_id == gate["target_dag_id"],
                    DagRun.run_id.in_(run_ids),
                    DagRun.state == DagRunState.QUEUED,
                )
                .values(state=DagRunState.FAILED)
                .execution_options(synchronize_session=False)
            ),
        )
        return int(result.rowcount or 0)
