"""What the controller's own tasks ask of the api-server: they have no database, so they ask over REST.

* :func:`plan_run` (``POST /backfill-controller/api/controller_runs/{run_id}/plan``): the ``plan``
  task asks the api-server to plan its run for the run's recorded requester
  (``triggering_user_name``), since a task acts with the controller's own identity. The request
  is checked and its dates claimed as the front door does (:mod:`backfill_controller.server.front_door`),
  and the backfill is recorded in the ledger (:mod:`backfill_controller.server.ledger`). A
  continuation run of a large backfill is recognised here, and only when its head created it.
* :func:`run_work` (``GET .../controller_runs/{run_id}/work``): what a planned run does, from
  its backfill's record (:mod:`backfill_controller.server.record`).
* :func:`keep_chunk` and :func:`run_chunks` (``POST .../chunks/{chunk}``, ``GET .../chunks``):
  each ``trigger`` task instance keeps in the record what it has acted on, and reads what the
  run's chunks have.
* :func:`keep_report` (``POST .../report``): the ``report`` task keeps its run's part of the
  result; the head run's also records how the backfill ended
  (:func:`backfill_controller.server.ui.settle`).
* :func:`keep_refusal` (``POST .../refusal``): why a run got no work, for the page.
* :func:`scheduled_dates` (``POST /backfill-controller/api/dags/{dag_id}/dates``): a request's
  dates by the target's timetable (the scheduled catch-up uses it).

Every call but the last is the controller's own account's only. The routes are in
:mod:`backfill_controller.server.web`; the ``trigger`` task's question whether its backfill is
paused is :func:`backfill_controller.server.actions.paused_for`.
"""

from __future__ import annotations

from typing import Any

import pendulum
from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.contract import (
    CATCHUP_PREFIX,
    CONTINUES_KEY,
    CONTROLLER_DAG_ID,
    MESSAGE_CHARS,
    SEGMENT_MARK,
)
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.plan import first_window
from backfill_controller.domain.request import InvalidRequest, parse_request
from backfill_controller.domain.rights import Right
from backfill_controller.domain.schedule import ScheduleError, expand
from backfill_controller.domain.settings import Limits
from backfill_controller.server import access, ledger, record, ui
from backfill_controller.server.front_door import claim, clash, field_error, plan, refused, start_first_runs
from backfill_controller.server.planner import parse

_DATE_KEYS = ("start_date", "end_date", "dates")


def plan_run(run_id: str, caller: Any, session: Session) -> dict[str, Any]:
    """Plan controller run ``run_id`` for its recorded requester and answer its work.

    ``caller`` must be the controller's own account, itself allowed to read the target. A run of a
    backfill planned already (through the front door, or an earlier attempt of this task) gets the
    work its record holds; a run triggered with a conf is planned here, for the user who triggered
    it, and recorded, and its first runs are created as the front door creates them
    (:func:`backfill_controller.server.front_door.start_first_runs`); a continuation gets its
    segment of its head's record. Answers ``{"status": "planned", "work": ...}``
    (:func:`backfill_controller.server.record.work`) or ``{"status": "overlap", "message": ...}``;
    403, 404, 409 or 422 for a refused run, saying why.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    access.require_service_account(caller)
    run = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id))
    if run is None:
        raise HTTPException(404, {"message": f"no run {run_id!r} of {CONTROLLER_DAG_ID}"})
    conf = dict(run.conf or {})
    requester = run.triggering_user_name
    run_type = str(getattr(run.run_type, "value", run.run_type))
    try:
        if CONTINUES_KEY in conf:
            entry, mine = record.bind_continuation(session, run, conf[CONTINUES_KEY])
            return {"status": "planned", "work": record.work(session, entry, mine)}
    except record.NotBound as exc:
        raise refused(InvalidRequest([field_error(CONTINUES_KEY, conf[CONTINUES_KEY], str(exc))])) from None
    catchup_by_a_user = run_id.startswith(CATCHUP_PREFIX) and requester != access.service_account()
    if SEGMENT_MARK in run_id or catchup_by_a_user:
        raise refused(
            InvalidRequest([field_error("run_id", run_id, "is shaped like the controller's own run ids")])
        )
    if run_type not in (DagRunType.MANUAL.value, DagRunType.OPERATOR_TRIGGERED.value):
        raise refused(access.Forbidden(f"a {run_type} run has no requester to act for"))
    recorded = ledger.entry(session, run_id)
    try:
        if recorded is not None:
            head = ledger.bound(session, recorded.backfill_id, 0) if recorded.backfill_id else None
            if head is not None:
                record.check(run, head)
                if record.is_planned(recorded):
                    return {"status": "planned", "work": record.work(session, recorded, head)}
            else:  # recorded before runs were bound: authorized afresh below
                recorded = None
    except record.NotBound as exc:
        raise record.refusal(exc) from None
    try:
        request = parse(conf)
        # The caller (the controller's service account) must itself be allowed to read the target.
        access.require(caller, request.target_dag_id, [Right.READ_DAG])
    except (access.Forbidden, InvalidRequest) as exc:
        raise refused(exc) from None
    # Authorized already when the front door recorded it for this requester (it waited for an
    # overlapping backfill, so it was not planned then); else the requester is asked about now.
    authorized = recorded is not None and recorded.requester == requester
    user = None if authorized else _requester(requester)
    planned = plan(conf, user, session, authorized=authorized)
    why = clash(session, planned, run_id)
    if why:
        return {"status": "overlap", "message": why}
    claim(session, run_id, requester, planned)
    try:
        entry = record.bind_head(session, run, planned.request.target_dag_id, requester)
    except record.NotBound as exc:
        raise record.refusal(exc) from None
    dates, execution = record.keep(session, entry, planned, conf)
    if not planned.request.dry_run:
        start_first_runs(session, planned, first_window(dates, execution.feeding), requester)
    entry, head = record.bound_run_of(session, run)
    return {"status": "planned", "work": record.work(session, entry, head)}


def _run(run_id: str, caller: Any, session: Session) -> Any:
    """Controller run ``run_id`` (a ``DagRun``), asked about by the controller's own account (403
    for anyone else; 404 for no such run)."""
    from airflow.models.dagrun import DagRun

    access.require_service_account(caller)
    run = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id))
    if run is None:
        raise HTTPException(404, {"message": f"no run {run_id!r} of {CONTROLLER_DAG_ID}"})
    return run


def _bound(run: Any, session: Session) -> tuple[ledger.Entry, ledger.BoundRun]:
    """The record and bound run of ``run``: 404 for a run of no planned backfill, 409 for a run that
    is not the one its backfill was made with."""
    try:
        return record.bound_run_of(session, run)
    except record.NotBound as exc:
        raise record.refusal(exc) from None


def run_work(run_id: str, caller: Any, session: Session, segment: int | None = None) -> dict[str, Any]:
    """The work of controller run ``run_id`` (:func:`backfill_controller.server.record.work`)."""
    run = _run(run_id, caller, session)
    entry, mine = _bound(run, session)
    try:
        return record.work(session, entry, mine, segment)
    except record.NotBound as exc:
        raise record.refusal(exc) from None


def _open(run: Any) -> None:
    """409 unless ``run`` is still running: only a running run's tasks report."""
    state = str(getattr(run.state, "value", run.state))
    if state not in OPEN_RUN:
        raise HTTPException(409, {"message": f"controller run {run.run_id!r} has ended ({state})"})


def keep_chunk(run_id: str, chunk: int, body: Any, caller: Any, session: Session) -> dict[str, Any]:
    """Keep what chunk ``chunk`` of ``run_id`` has acted on (its ``trigger`` task's account); 422
    naming what does not fit the run's work."""
    run = _run(run_id, caller, session)
    _, mine = _bound(run, session)
    _open(run)
    try:
        record.keep_chunk(session, mine, chunk, body)
    except record.BadAccount as exc:
        raise HTTPException(422, {"field": "chunk", "message": str(exc)}) from None
    return {"run_id": run_id, "chunk": chunk}


def run_chunks(run_id: str, caller: Any, session: Session) -> dict[str, Any]:
    """What each chunk of ``run_id`` has acted on, as kept in the record."""
    run = _run(run_id, caller, session)
    _, mine = _bound(run, session)
    return {"run_id": run_id, "chunks": record.chunks_of(session, mine)}


def keep_report(run_id: str, body: Any, caller: Any, session: Session) -> dict[str, Any]:
    """Keep that ``run_id``'s ``report`` task began, and its part of the result (``report``, a JSON
    object, or null); for a head run, then record how the backfill ended
    (:func:`backfill_controller.server.ui.settle`): ``settled`` is its summary, or null while a
    date can still change."""
    run = _run(run_id, caller, session)
    _, mine = _bound(run, session)
    _open(run)
    report = body.get("report") if isinstance(body, dict) else None
    if report is not None and not isinstance(report, dict):
        raise HTTPException(422, {"field": "report", "message": "must be a JSON object or null"})
    ledger.keep_report(session, mine, report)
    ended = ui.settle(session, run) if mine.segment == 0 else None
    return {"run_id": run_id, "settled": ended.summary if ended is not None else None}


def keep_refusal(run_id: str, body: Any, caller: Any, session: Session) -> dict[str, Any]:
    """Keep why ``run_id`` got no work (``message``, text), which the page shows; 409 for a run of
    a planned backfill (it has work), 422 for a message that is not text of at most
    :data:`backfill_controller.contract.MESSAGE_CHARS` characters."""
    run = _run(run_id, caller, session)
    if ledger.bound_by_pk(session, run.id) is not None:
        raise HTTPException(409, {"message": f"controller run {run_id!r} belongs to a planned backfill"})
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message or len(message) > MESSAGE_CHARS:
        raise HTTPException(
            422,
            {"field": "message", "message": f"must be text of 1 to {MESSAGE_CHARS} characters"},
        )
    ledger.refuse(session, run, message)
    return {"run_id": run_id}


def _requester(name: str | None) -> Any:
    """The user a controller run acts for; refuses (fails closed) where the auth manager cannot say."""
    if not name:
        raise refused(
            access.Forbidden(
                "this run records no authenticated requester; request backfills through the UI, "
                f"the REST API or the front door ({access.FRONT_DOOR})"
            )
        )
    user = access.user_named(name)
    if user is None:
        raise refused(
            access.Forbidden(
                f"the rights of {name!r} cannot be checked for a run triggered this way with this "
                "deployment's auth manager; request the backfill through the front door "
                f"({access.FRONT_DOOR})"
            )
        )
    return user


def scheduled_dates(dag_id: str, body: dict[str, Any], session: Session) -> dict[str, Any]:
    """The logical dates, run_after and data intervals of the request ``body`` for ``dag_id``, oldest
    first, by its timetable; 404 for an unknown DAG, 422 naming the wrong field."""
    from airflow.models.dagbag import DBDagBag

    dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
    if dag is None:
        raise HTTPException(404, {"field": "dag_id", "message": f"no DAG {dag_id!r}"})
    now = pendulum.now("UTC")
    try:
        limits = Limits.from_config()
        request = parse_request(
            {"dag_id": dag_id, **{k: body.get(k) for k in _DATE_KEYS}}, limits=limits, now=now
        )
        dates = expand(dag.timetable, request, now, limit=limits.max_dates_per_request)
    except InvalidRequest as exc:
        raise HTTPException(422, {"field": exc.errors[0].field, "message": str(exc)}) from None
    except ScheduleError as exc:
        raise HTTPException(422, {"field": exc.field, "message": str(exc)}) from None
    return {
        "dag_id": dag_id,
        "timetable": dag.timetable.summary,
        "periodic": bool(dag.timetable.periodic),
        "dates": [d.to_dict() for d in dates],
    }
