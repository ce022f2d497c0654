"""Operating a backfill: pause, resume, cancel and re-run its failed dates, over REST.

``POST /backfill-controller/api/backfills/{run_id}/{pause|resume|cancel|rerun_failed}`` (a JSON
body, which may be ``{}``; the page and the CLI use them). What each means, and in which phase
each fits, is :mod:`backfill_controller.domain.controls`. Each answers 404 for a run that is no backfill,
403 without the right, 409 where the control does not fit the backfill's phase (the phase named);
otherwise the backfill as :func:`backfill_controller.server.ui.backfills_of` shows it (``rerun_failed``:
201 and the new backfill, as the front door answers it).

Rights, as Airflow would ask them for the same change by hand:

* pause, resume, cancel: **PUT on backfill_controller's DAG runs** (marking its run failed) and
  **GET on the target, PUT on the target's DAG runs** (cancelling marks its queued runs failed);
* re-run failed: what the front door asks of a new backfill of those dates.

A user who may not read the target learns nothing about it from a refusal. Each applied control is
kept in the backfill's history (who, when) and in Airflow's audit log (event
``backfill_controller.<control>``, shown under Browse → Audit Log).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.domain.controls import Applied, Control, paused, paused_seconds, rerun_conf
from backfill_controller.domain.controls import refusal as misfit
from backfill_controller.domain.rights import Right
from backfill_controller.domain.segments import SEGMENT_MARK
from backfill_controller.domain.state import FAILED_DATES, DateState, Phase
from backfill_controller.server import access, ledger
from backfill_controller.server.planner import CONTROLLER_DAG_ID
from backfill_controller.server.ui import backfills_of, readable_dag_ids

router = APIRouter(tags=["Operate a backfill"])

_READ_CONTROLLER_RUNS = Depends(
    requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN, param_dag_id=CONTROLLER_DAG_ID)
)

#: The rights on the target that pausing, resuming or cancelling a backfill of it needs.
OPERATE_TARGET = (Right.READ_DAG, Right.READ_RUNS, Right.CLEAR_RUNS)


_JSON_ONLY = Depends(access.json_only)


def _head(session: Session, run_id: str) -> Any:
    from airflow.models.dagrun import DagRun

    head = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id))
    if head is None or SEGMENT_MARK in run_id:
        raise HTTPException(404, {"message": f"no backfill has the run id {run_id!r}"})
    return head


def _target(session: Session, head: Any) -> str | None:
    entry = ledger.entry(session, head.run_id)
    target = entry.target_dag_id if entry is not None else (head.conf or {}).get("dag_id")
    return target if isinstance(target, str) else None


def _require_operate(user: Any, target: str | None, readable: set[str]) -> None:
    """403 unless ``user`` may operate a backfill of ``target``; never names a target it may not read."""
    name = access.user_name(user)
    if target is None or target not in readable:
        raise HTTPException(403, {"message": f"{name} may not operate this backfill"})
    for dag_id, rights, doing in (
        (CONTROLLER_DAG_ID, (Right.CLEAR_RUNS,), "change the runs of"),
        (target, OPERATE_TARGET, "operate a backfill of"),
    ):
        if missing := access.missing_rights(user, dag_id, rights):
            message = access.refusal(name, dag_id, missing, doing)
            raise HTTPException(403, {"message": message, "missing": [r.describe() for r in missing]})


def _failed(shown: dict[str, Any]) -> list[str]:
    """The logical dates of a shown backfill that ended failed."""
    return [c["logical_date"] for c in shown["cells"] if DateState(c["state"]) in FAILED_DATES]


def _misfit(control: Control, shown: dict[str, Any]) -> str | None:
    failed = int(shown["progress"]["tally"]["failed"])
    return misfit(control, Phase(shown["phase"]), bool(shown["paused"]), failed)


def _fits(control: Control, shown: dict[str, Any]) -> None:
    if why := _misfit(control, shown):
        raise HTTPException(409, {"message": why, "phase": shown["phase"]})


def controls_for(user: Any, shown: dict[str, Any], readable: set[str]) -> list[str]:
    """The controls ``user`` may apply to a backfill shown as ``shown`` now (the page's buttons).

    Re-run failed is offered to whoever may trigger the controller; the front door then checks
    the new backfill's rights on the target as for any request.
    """
    target = shown.get("target_dag_id")
    if not shown.get("visible") or target not in readable:
        return []
    fitting = [c for c in Control if _misfit(c, shown) is None]
    if not fitting:
        return []
    may_operate = not access.missing_rights(user, CONTROLLER_DAG_ID, [Right.CLEAR_RUNS]) and not (
        access.missing_rights(user, str(target), OPERATE_TARGET)
    )
    may_start = not access.missing_rights(user, CONTROLLER_DAG_ID, [Right.CREATE_RUNS])
    return [c.value for c in fitting if (may_start if c is Control.RERUN_FAILED else may_operate)]


def _keep(session: Session, head: Any, target: str, applied: Applied) -> None:
    """Record the control in the backfill's history and in Airflow's audit log."""
    from airflow.models.log import Log

    ledger.add(session, head.run_id, applied)
    extra = json.dumps({"backfill": head.run_id, "detail": applied.detail})
    event = f"backfill_controller.{applied.control.value}"
    session.add(Log(event=event, owner=applied.by, dag_id=target, run_id=head.run_id, extra=extra))


def _operate(control: Control, run_id: str, user: Any, session: Session) -> tuple[Any, str, dict[str, Any]]:
    """Check ``control`` on backfill ``run_id`` for ``user``: its head run, target and summary."""
    head = _head(session, run_id)
    readable = readable_dag_ids(user)
    target = _target(session, head)
    if control is Control.RERUN_FAILED:
        if target not in readable:
            raise HTTPException(403, {"message": f"{access.user_name(user)} may not operate this backfill"})
    else:
        _require_operate(user, target, readable)
    shown = backfills_of(session, [head], readable, with_cells=True)[0]
    _fits(control, shown)
    return head, str(target), shown


def _switch(control: Control, run_id: str, user: Any, session: Session) -> dict[str, Any]:
    head, target, _ = _operate(control, run_id, user, session)
    _keep(session, head, target, Applied(control, access.user_name(user), datetime.now(UTC)))
    session.flush()
    return backfills_of(session, [head], readable_dag_ids(user))[0]


@router.post("/api/backfills/{run_id}/pause", dependencies=[_JSON_ONLY])
def pause(run_id: str, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """No new date starts; runs already queued or running finish. Time paused does not count
    against the backfill's ``timeout_minutes``."""
    return _switch(Control.PAUSE, run_id, user, session)


@router.post("/api/backfills/{run_id}/resume", dependencies=[_JSON_ONLY])
def resume(run_id: str, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """Dates start again where the backfill stopped."""
    return _switch(Control.RESUME, run_id, user, session)


@router.post("/api/backfills/{run_id}/cancel", dependencies=[_JSON_ONLY])
def cancel(run_id: str, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """As marking the controller run failed: nothing new starts, in any segment; its queued target
    runs are marked failed; runs already running finish."""
    from backfill_controller.airflow_internals import fail_runs
    from backfill_controller.server.cancel import cancel as stop

    head, target, _ = _operate(Control.CANCEL, run_id, user, session)
    _keep(session, head, target, Applied(Control.CANCEL, access.user_name(user), datetime.now(UTC)))
    stop(session, head.run_id, user)
    fail_runs(session, CONTROLLER_DAG_ID, [head.run_id])
    session.flush()
    return backfills_of(session, [head], readable_dag_ids(user))[0]


@router.post("/api/backfills/{run_id}/rerun_failed", status_code=201, dependencies=[_JSON_ONLY])
def rerun_failed(run_id: str, user: GetUserDep, session: SessionDep, request: Request) -> dict[str, Any]:
    """Start a new backfill of exactly the dates that ended failed (same target, task selection and
    conf; ``reprocess: failed``); answers as the front door does, with the new run id."""
    from backfill_controller.server.web import start_backfill

    head, target, shown = _operate(Control.RERUN_FAILED, run_id, user, session)
    conf = rerun_conf(dict(head.conf or {}), _failed(shown), head.run_id)
    started = start_backfill(conf, user, session, request)
    applied = Applied(Control.RERUN_FAILED, access.user_name(user), datetime.now(UTC), started["dag_run_id"])
    _keep(session, head, target, applied)
    return started


@router.get("/api/controller_runs/{run_id}/paused", dependencies=[_READ_CONTROLLER_RUNS])
def paused_for(run_id: str, session: SessionDep) -> dict[str, Any]:
    """Whether the backfill of a controller run (head or continuation) is paused, and how long it
    has been paused in all: the ``trigger`` task asks before it starts a date, and moves its
    deadline by that long."""
    head = run_id.split(SEGMENT_MARK, 1)[0]
    history = ledger.histories(session, [head])[head]
    return {"paused": paused(history), "paused_seconds": paused_seconds(history, datetime.now(UTC))}
