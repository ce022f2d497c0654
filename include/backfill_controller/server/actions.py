"""Operating a backfill: pause, resume, cancel and re-run its failed dates, over REST.

``POST /backfill-controller/api/backfills/{run_id}/{pause|resume|cancel|rerun_failed}`` (a JSON
body, which may be ``{}``; the page and the CLI use them; the routes are in
:mod:`backfill_controller.server.web`). What each means, and in which phase each fits, is
:mod:`backfill_controller.domain.controls`. Each answers 404 for a run that is no backfill, 403
without the right, 409 where the control does not fit the backfill's phase (the phase named);
otherwise the backfill as :func:`backfill_controller.server.ui.backfills_of` shows it
(``rerun_failed``: 201 and the new backfill, as the front door answers it).

Rights, as Airflow would ask them for the same change by hand:

* pause, resume, cancel: **PUT on backfill_controller's DAG runs** (marking its run failed) and
  **GET on the target, PUT on the target's DAG runs** (cancelling marks its queued runs failed:
  :data:`backfill_controller.domain.rights.OPERATE_TARGET`);
* re-run failed: what the front door asks of a new backfill of those dates.

A user who may not read the target learns nothing about it from a refusal. Each applied control is
kept in the backfill's history (who, when) and in Airflow's audit log (event
``backfill_controller.<control>``, shown under Browse → Audit Log). Which controls the page offers
a reader is :func:`backfill_controller.server.ui.controls_for`.

The ``trigger`` task asks whether its backfill is paused (:func:`paused_for`,
``GET /backfill-controller/api/controller_runs/{run_id}/paused``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTROLLER_DAG_ID, SEGMENT_MARK
from backfill_controller.domain.controls import Applied, Control, paused, paused_seconds, rerun_conf
from backfill_controller.domain.rights import OPERATE_TARGET, Right
from backfill_controller.domain.state import FAILED_DATES, DateState, left_alone
from backfill_controller.server import access, ledger
from backfill_controller.server.front_door import start_backfill
from backfill_controller.server.ui import backfills_of, misfit, readable_dag_ids


def _head(session: Session, run_id: str) -> Any:
    from airflow.models.dagrun import DagRun

    head = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id))
    if head is None or SEGMENT_MARK in run_id:
        raise HTTPException(404, {"message": f"no backfill has the run id {run_id!r}"})
    return head


def _target(session: Session, head: Any) -> str | None:
    """The backfill's target: its record's, for a head run bound to one (a run re-created under an
    old run_id is not); else, for a run not planned yet, the one its conf asks for."""
    mine = ledger.bound_by_pk(session, head.id)
    entry = ledger.entry_by_id(session, mine.backfill_id) if mine is not None else None
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
    """The logical dates of a shown backfill that it acted on and that ended failed (a date it left
    alone shows its run's state, but is not the backfill's to re-run)."""
    return [
        c["logical_date"]
        for c in shown["cells"]
        if DateState(c["state"]) in FAILED_DATES and not left_alone(c["action"])
    ]


def _fits(control: Control, shown: dict[str, Any]) -> None:
    if why := misfit(control, shown):
        raise HTTPException(409, {"message": why, "phase": shown["phase"]})


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


def switch(control: Control, run_id: str, user: Any, session: Session) -> dict[str, Any]:
    """Pause or resume backfill ``run_id`` for ``user``: the backfill as it is now."""
    head, target, _ = _operate(control, run_id, user, session)
    _keep(session, head, target, Applied(control, access.user_name(user), datetime.now(UTC)))
    session.flush()
    return backfills_of(session, [head], readable_dag_ids(user))[0]


def cancel(run_id: str, user: Any, session: Session) -> dict[str, Any]:
    """Cancel backfill ``run_id`` for ``user`` as marking its controller run failed would
    (:mod:`backfill_controller.server.cancel`): the backfill as it is now."""
    from backfill_controller.airflow_internals import fail_runs
    from backfill_controller.server.cancel import cancel as stop

    head, target, _ = _operate(Control.CANCEL, run_id, user, session)
    _keep(session, head, target, Applied(Control.CANCEL, access.user_name(user), datetime.now(UTC)))
    stop(session, head.run_id, user)
    fail_runs(session, CONTROLLER_DAG_ID, [head.run_id])
    session.flush()
    return backfills_of(session, [head], readable_dag_ids(user))[0]


def rerun_failed(run_id: str, user: Any, session: Session, request: Request) -> dict[str, Any]:
    """Start, for ``user``, a new backfill of the dates of backfill ``run_id`` that ended failed:
    the front door's answer (:func:`backfill_controller.server.front_door.start_backfill`)."""
    head, target, shown = _operate(Control.RERUN_FAILED, run_id, user, session)
    conf = rerun_conf(dict(head.conf or {}), _failed(shown), head.run_id)
    started = start_backfill(conf, user, session, request)
    applied = Applied(Control.RERUN_FAILED, access.user_name(user), datetime.now(UTC), started["dag_run_id"])
    _keep(session, head, target, applied)
    return started


def paused_for(run_id: str, session: Session) -> dict[str, Any]:
    """Whether the backfill of controller run ``run_id`` (head or continuation) is paused, and for
    how long in all."""
    head = run_id.split(SEGMENT_MARK, 1)[0]
    history = ledger.histories(session, [head])[head]
    return {"paused": paused(history), "paused_seconds": paused_seconds(history, datetime.now(UTC))}
