"""Cancelling a backfill: a user marks one of its controller runs failed, and all of it stops.

A backfill is cancelled by marking its controller run (or one of its continuation runs) failed:
the UI's "Mark as failed", or ``PATCH /api/v2/dags/backfill_controller/dagRuns/{run_id}`` with
``{"state": "failed"}``. Airflow then fires the listener hook ``on_dag_run_failed`` inside that
request, in the api-server; the plugin registers this module as a listener, and
:class:`ActingUserMiddleware` as a root middleware that keeps the request's authenticated user for
it and, for the controller's runs, has the request lock each run it reads before it writes the
run's task instances (:func:`backfill_controller.airflow_internals.lock_runs_when_read`: the
scheduler's order, so a cancel and the scheduler never deadlock on PostgreSQL). Then, in the
request's own database transaction (a second one would wait for SQLite's lock while the request
holds it):

* the backfill's other controller runs still open (head and continuation segments) are marked
  failed too, so no segment starts anything afterwards;
* its target runs still queued are marked failed, as cancelling a native backfill does; runs
  already running finish. These are exactly the runs the backfill was authorized to create or
  clear, read from the ledger (:mod:`backfill_controller.server.ledger`), never from an XCom;
* only if the acting user may edit the target's runs (PUT on its DAG runs): someone who may
  mark controller runs failed but not touch the target stops the controller and nothing else.

A backfill that had finished (its ``report`` task began, as its record says) fails nothing when
marked failed later, and a controller run that fails by itself (a failed date, a timeout: no user
acting) changes nothing.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from typing import Any, cast

from airflow.listeners import hookimpl
from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, object_session

from backfill_controller.contract import CONTROLLER_DAG_ID, SEGMENT_MARK, Task, continuation_run_id
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.rights import Right
from backfill_controller.server import access, ledger, record

log = logging.getLogger(__name__)

_BATCH = 500

#: The authenticated user of the request being served, for requests that can mark a run failed.
ACTING_USER: ContextVar[Any] = ContextVar("backfill_controller_acting_user", default=None)
#: ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`` and the bulk ``PATCH .../dagRuns``.
_STATE_CHANGE = re.compile(r"^/api/v2/dags/([^/]+)/dagRuns(/[^/]+)?/?$")


class ActingUserMiddleware:
    """Root ASGI middleware: for requests that can change a DAG run's state, resolve the caller
    (bearer token, else the UI's cookie, as Airflow's ``get_user`` does) into :data:`ACTING_USER`."""

    def __init__(self, app: Any):
        from backfill_controller.airflow_internals import lock_runs_when_read

        self.app = app
        lock_runs_when_read()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from backfill_controller.airflow_internals import LOCK_RUNS_READ

        change = _STATE_CHANGE.match(scope.get("path", "")) if scope.get("type") == "http" else None
        if change is None or scope.get("method") != "PATCH":
            await self.app(scope, receive, send)
            return
        user = ACTING_USER.set(await _caller(scope))
        lock = LOCK_RUNS_READ.set(change.group(1) == CONTROLLER_DAG_ID)
        try:
            await self.app(scope, receive, send)
        finally:
            LOCK_RUNS_READ.reset(lock)
            ACTING_USER.reset(user)


async def _caller(scope: Any) -> Any:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from starlette.requests import Request

    request = Request(scope)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials if scheme.lower() == "bearer" else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        return None
    try:
        return await get_auth_manager().get_user_from_token(token)
    except Exception:  # Airflow's own dependency answers the request with 401/403
        return None


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    if getattr(dag_run, "dag_id", None) != CONTROLLER_DAG_ID:
        return
    user = ACTING_USER.get()
    if user is None:  # failed by itself (the scheduler), not by a user's request
        return
    try:
        session = object_session(dag_run)
        if session is None:
            from airflow.utils.session import create_session

            with create_session() as own:
                cancel(own, dag_run.run_id, user)
        else:
            cancel(session, dag_run.run_id, user)
    except Exception:  # a listener must never break the state change it reports
        log.exception("could not cancel the backfill of controller run %s", dag_run.run_id)


def cancel(session: Session, controller_run_id: str, user: Any) -> int:
    """Stop the backfill ``controller_run_id`` belongs to, for ``user``; how many target runs failed."""
    head = controller_run_id.split(SEGMENT_MARK, 1)[0]
    entry = _record_of(session, controller_run_id)
    if entry is None:  # never authorized (it created nothing), or not its record's run
        return 0
    if _had_finished(session, entry):
        log.info("backfill %s had finished: marking it failed cancels nothing", head)
        return 0
    from backfill_controller.airflow_internals import fail_runs, mark_unstarted_upstream_failed

    others = [r for r in _open_runs(session, head) if r != controller_run_id]
    fail_runs(session, CONTROLLER_DAG_ID, others)
    if session.get_bind().dialect.name == "sqlite":
        # Failing a run skips its unstarted tasks; a scheduler that read the run as still running
        # before the change (Airflow on SQLite takes no row lock) would then find every leaf done
        # without a failure and mark it successful. Its unstarted report, failed, keeps it failed.
        # Not on PostgreSQL: the scheduler's row lock on the run rules the race out there, and
        # locking the report's row here, before the run's, could deadlock with the scheduler.
        mark_unstarted_upstream_failed(session, CONTROLLER_DAG_ID, Task.REPORT, [controller_run_id, *others])
    name = access.user_name(user)
    if access.missing_rights(user, entry.target_dag_id, [Right.CLEAR_RUNS]):
        log.warning(
            "backfill %s cancelled by %s, who may not edit runs of %s: its queued runs are left as they are",
            head,
            name,
            entry.target_dag_id,
        )
        return 0
    failed = _fail_queued(session, entry)
    log.info("backfill %s cancelled by %s: %d queued target run(s) marked failed", head, name, failed)
    return failed


def _record_of(session: Session, controller_run_id: str) -> ledger.Entry | None:
    """The record of the backfill whose run ``controller_run_id`` is: its head, still the run the
    record was made with, or one of the continuation runs the record names. None for any other
    run (one re-created under an old run_id, a run merely named like a continuation)."""
    from airflow.models.dagrun import DagRun

    head_id = controller_run_id.split(SEGMENT_MARK, 1)[0]
    head = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == head_id))
    mine = ledger.bound_by_pk(session, head.id) if head is not None else None
    if mine is None or mine.segment != 0:
        return None
    try:
        record.check(head, mine)
    except record.NotBound:
        return None
    entry = ledger.entry_by_id(session, mine.backfill_id)
    if entry is None:
        return None
    later = {continuation_run_id(head_id, k, entry.segment_token) for k in range(1, entry.segments or 1)}
    return entry if controller_run_id == head_id or controller_run_id in later else None


def _had_finished(session: Session, entry: ledger.Entry) -> bool:
    """Whether the backfill's head run reached its report (every date was over by then), as its
    record says."""
    head = ledger.bound(session, entry.backfill_id, 0) if entry.backfill_id is not None else None
    return head is not None and head.reported


def _open_runs(session: Session, head: str) -> list[str]:
    """The backfill's controller runs (head and continuations) still queued or running."""
    from airflow.models.dagrun import DagRun

    rows = session.scalars(
        select(DagRun.run_id).where(
            DagRun.dag_id == CONTROLLER_DAG_ID,
            DagRun.state.in_(sorted(OPEN_RUN)),
            (DagRun.run_id == head) | DagRun.run_id.startswith(head + SEGMENT_MARK, autoescape=True),
        )
    )
    return list(rows)


def _fail_queued(session: Session, entry: ledger.Entry) -> int:
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState

    failed = 0
    run_ids = ledger.target_run_ids(session, entry)
    for start in range(0, len(run_ids), _BATCH):
        result = cast(
            "CursorResult[Any]",
            session.execute(
                update(DagRun)
                .where(
                    DagRun.dag_id == entry.target_dag_id,
                    DagRun.run_id.in_(run_ids[start : start + _BATCH]),
                    DagRun.state == DagRunState.QUEUED,
                )
                .values(state=DagRunState.FAILED)
                .execution_options(synchronize_session=False)
            ),
        )
        failed += int(result.rowcount or 0)
    return failed
