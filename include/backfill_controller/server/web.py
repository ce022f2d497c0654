"""The controller's HTTP endpoints, served inside the api-server by ``plugins/backfill_controller_plugin.py``.

Every endpoint is authenticated like Airflow's own (the caller's bearer token, or the UI's
cookie) and answers for the caller's rights on the target DAG (:mod:`backfill_controller.server.access`).

The front door, for people and other systems:

* ``POST /backfill-controller/api/backfills`` (body: the controller's conf) checks the request
  against the live target at once (:func:`backfill_controller.server.planner.plan_request`: every
  problem in one answer, 422; a missing right, 403; an overlapping backfill with
  ``on_overlap: refuse``, 409) and creates the ``backfill_controller`` run for the caller (201,
  with its run_id and links).
* ``POST /backfill-controller/api/backfills/dry_run`` (same body) answers the per-date plan without
  creating anything.

For the controller itself:

* ``POST /backfill-controller/api/controller_runs/{run_id}/plan``: the ``plan`` task asks the
  api-server to plan its run for the run's recorded requester (``triggering_user_name``), since a
  task has no database and acts with the controller's own identity. The backfill is recorded in
  the ledger (:mod:`backfill_controller.server.ledger`).
* ``POST /backfill-controller/api/dags/{dag_id}/dates``: a request's dates by the target's
  timetable (the scheduled catch-up uses it).
* ``GET /backfill-controller/api/controller_runs/{run_id}/paused``: whether the backfill is
  paused (:mod:`backfill_controller.server.actions`, which also serves pause, resume, cancel and re-run).
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import pendulum
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.utils.state import DagRunState
from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.domain.overlap import first_overlap, span_of
from backfill_controller.domain.plan import acting
from backfill_controller.domain.report import build_report
from backfill_controller.domain.request import FieldError, InvalidRequest, OnOverlap, parse_request
from backfill_controller.domain.rights import Right
from backfill_controller.domain.schedule import ScheduleError, expand
from backfill_controller.domain.segments import CONTINUES_KEY, SEGMENT_MARK, continuation_run_id
from backfill_controller.domain.settings import Limits
from backfill_controller.server import access, ledger
from backfill_controller.server.actions import router as backfill_actions
from backfill_controller.server.planner import CONTROLLER_DAG_ID, Planned, parse, plan_request
from backfill_controller.server.ui import router as backfills_page

app = FastAPI(title="Backfill Controller", description="Backfills any DAG with its own timetable.")

_DATE_KEYS = ("start_date", "end_date", "dates")
#: Prefix of the run_ids of the controller runs the scheduled catch-up creates.
CATCHUP_PREFIX = "catchup__"
_OPEN = (DagRunState.QUEUED, DagRunState.RUNNING)

_READ_CONTROLLER_RUNS = Depends(
    requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN, param_dag_id=CONTROLLER_DAG_ID)
)
Conf = Annotated[dict[str, Any], Body(description="The backfill_controller conf (see its Params).")]


_JSON_ONLY = Depends(access.json_only)


def _refused(exc: Exception) -> HTTPException:
    """The HTTP answer to a refused request: 403 for a missing right, 422 for bad fields."""
    if isinstance(exc, access.Forbidden):
        return HTTPException(403, {"message": str(exc), "missing": [r.describe() for r in exc.missing]})
    if isinstance(exc, InvalidRequest):
        errors = [
            {
                "field": e.field,
                "value": json.loads(json.dumps(e.value, default=str)),
                "problem": e.problem,
                "accepted": e.accepted,
            }
            for e in exc.errors
        ]
        return HTTPException(422, {"message": str(exc), "errors": errors})
    raise exc


def _plan(conf: dict[str, Any], user: Any, session: Session, *, authorized: bool = False) -> Planned:
    try:
        return plan_request(parse(conf), user=user, session=session, authorized=authorized)
    except (access.Forbidden, InvalidRequest) as exc:
        raise _refused(exc) from None


def _clash(session: Session, planned: Planned, controller_run_id: str | None) -> str | None:
    """Why another running backfill blocks this one (same target, overlapping dates), or None.

    Only backfills that claimed their dates count: one that waits for another has claimed none, so
    two that wait never wait for each other. The check and the claim that follows it are one
    transaction, and :func:`ledger.hold_target` makes two requests for one target check one after
    the other.
    """
    from airflow.models.dagrun import DagRun

    mine = span_of(planned.request.target_dag_id, planned.plans)
    if mine is None or planned.request.dry_run:
        return None
    ledger.hold_target(session, mine.target_dag_id)
    open_ids = session.scalars(
        select(DagRun.run_id).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.state.in_(_OPEN))
    ).all()
    others = {
        run_id: entry.span
        for run_id, entry in ledger.entries(session, [r for r in open_ids if r != controller_run_id]).items()
    }
    clash = first_overlap(mine, others)
    if clash is None:
        return None
    other, span = clash
    return (
        f"dates {mine.first} .. {mine.last} overlap backfill {other} of {mine.target_dag_id} "
        f"({span.first} .. {span.last}), which is still running"
    )


def _claim(session: Session, run_id: str, requester: str | None, planned: Planned) -> None:
    """Record the backfill in the ledger with the span and the target runs it acts on."""
    request = planned.request
    span = None if request.dry_run else span_of(request.target_dag_id, planned.plans)
    run_ids = () if request.dry_run else tuple(p.run_id for p in acting(planned.plans))
    ledger.record(session, ledger.Entry(run_id, request.target_dag_id, requester, span, run_ids))


@app.post("/api/backfills", status_code=201, dependencies=[_JSON_ONLY])
def create_backfill(
    conf: Conf,
    user: GetUserDep,
    session: SessionDep,
    request: Request,
    run_id: Annotated[
        str | None,
        Query(max_length=250, pattern=r"^[A-Za-z0-9_.:+\-]+$", description="Run id (retries are idempotent)"),
    ] = None,
) -> dict[str, Any]:
    """Check a backfill request against its live target for the caller, then start it.

    With ``run_id``, a retry of a request that did create its run answers that run again.
    """
    return start_backfill(conf, user, session, request, run_id)


def start_backfill(
    conf: dict[str, Any], user: Any, session: Session, request: Request, run_id: str | None = None
) -> dict[str, Any]:
    """The front door: check ``conf`` for ``user`` and create the controller run (see the module)."""
    from airflow.models.dagrun import DagRun

    from backfill_controller.airflow_internals import create_run

    try:
        if missing := access.missing_rights(user, CONTROLLER_DAG_ID, [Right.CREATE_RUNS]):
            name = access.user_name(user)
            raise access.Forbidden(
                f"{name} may not trigger {CONTROLLER_DAG_ID}: missing right POST on its DAG runs", missing
            )
        if run_id is not None and (SEGMENT_MARK in run_id or run_id.startswith(CATCHUP_PREFIX)):
            raise InvalidRequest([_field("run_id", run_id, "is shaped like the controller's own run ids")])
    except (access.Forbidden, InvalidRequest) as exc:
        raise _refused(exc) from None
    planned = _plan(conf, user, session)
    existing = None
    if run_id is not None:
        existing = session.scalar(
            select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id)
        )
        if existing is not None and existing.triggering_user_name != access.user_name(user):
            raise HTTPException(409, {"message": f"run_id {run_id!r} is taken"})
    why = _clash(session, planned, run_id)
    if existing is None and why and planned.request.on_overlap is OnOverlap.REFUSE:
        raise HTTPException(409, {"message": f"{why}; wait for it, cancel it, or set on_overlap=wait"})
    run = existing or create_run(session, CONTROLLER_DAG_ID, conf, user=user, request=request, run_id=run_id)
    if existing is None and why is None:  # authorized with the caller's own token; its dates claimed
        _claim(session, run.run_id, access.user_name(user), planned)
    elif existing is None:  # it waits for the other backfill: its plan task claims the dates later
        entry = ledger.Entry(run.run_id, planned.request.target_dag_id, access.user_name(user), None, ())
        ledger.record(session, entry)
    quoted = quote(run.run_id, safe="")
    base = f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{quoted}"
    return {
        "dag_id": CONTROLLER_DAG_ID,
        "dag_run_id": run.run_id,
        "target_dag_id": planned.request.target_dag_id,
        "dates": len(planned.plans),
        "acting": len(acting(planned.plans)),
        "waits_for": why,
        "links": {
            "ui": f"/dags/{CONTROLLER_DAG_ID}/runs/{quoted}",
            "page": "/backfill-controller/ui",
            "run": base,
            "report": base + "/taskInstances/report/xcomEntries/return_value",
        },
    }


@app.post("/api/backfills/dry_run", dependencies=[_JSON_ONLY])
def dry_run(conf: Conf, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """What a backfill would do to each date, for the caller; creates and changes nothing.

    The answer is the report a dry run of the controller returns
    (:func:`backfill_controller.domain.report.build_report`): per date its logical date, data interval,
    action, why, and the task ids a task-subset backfill would clear.
    """
    planned = _plan({**conf, "dry_run": True}, user, session)
    report = build_report(planned.request, planned.plans, triggered_by=access.user_name(user))
    return {**report, "selected_tasks": list(planned.selected_tasks)}


@app.post("/api/controller_runs/{run_id}/plan", dependencies=[_READ_CONTROLLER_RUNS])
def plan_controller_run(run_id: str, caller: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """Plan a controller run for its recorded requester (the ``plan`` task's call).

    Answers ``{"status": "planned", ...}`` with the plan (and records the backfill in the ledger),
    ``{"status": "overlap", "message": ...}`` when a running backfill has some of its dates,
    ``{"status": "continuation", ...}`` for a genuine continuation run; 403 or 422 for a refused
    request, naming what is missing or wrong.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    run = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id))
    if run is None:
        raise HTTPException(404, {"message": f"no run {run_id!r} of {CONTROLLER_DAG_ID}"})
    conf = dict(run.conf or {})
    requester = run.triggering_user_name
    run_type = str(getattr(run.run_type, "value", run.run_type))
    if CONTINUES_KEY in conf:
        return _continuation(session, run_id, conf[CONTINUES_KEY], requester, run_type)
    catchup_by_a_user = run_id.startswith(CATCHUP_PREFIX) and requester != access.service_account()
    if SEGMENT_MARK in run_id or catchup_by_a_user:
        raise _refused(
            InvalidRequest([_field("run_id", run_id, "is shaped like the controller's own run ids")])
        )
    if run_type not in (DagRunType.MANUAL.value, DagRunType.OPERATOR_TRIGGERED.value):
        raise _refused(access.Forbidden(f"a {run_type} run has no requester to act for"))
    try:
        request = parse(conf)
        # The caller (the controller's service account) must itself be allowed to read the target.
        access.require(caller, request.target_dag_id, [Right.READ_DAG])
    except (access.Forbidden, InvalidRequest) as exc:
        raise _refused(exc) from None
    recorded = ledger.entry(session, run_id)
    authorized = recorded is not None and recorded.requester == requester
    user = None if authorized else _requester(requester)
    planned = _plan(conf, user, session, authorized=authorized)
    why = _clash(session, planned, run_id)
    if why:
        return {"status": "overlap", "message": why}
    _claim(session, run_id, requester, planned)
    return {"status": "planned", **planned.to_dict()}


def _requester(name: str | None) -> Any:
    """The user a controller run acts for; refuses (fails closed) where the auth manager cannot say."""
    if not name:
        raise _refused(
            access.Forbidden(
                "this run records no authenticated requester; request backfills through the UI, "
                f"the REST API or the front door ({access.FRONT_DOOR})"
            )
        )
    user = access.user_named(name)
    if user is None:
        raise _refused(
            access.Forbidden(
                f"the rights of {name!r} cannot be checked for a run triggered this way with this "
                "deployment's auth manager; request the backfill through the front door "
                f"({access.FRONT_DOOR})"
            )
        )
    return user


def _continuation(
    session: Session, run_id: str, continues: Any, requester: str | None, run_type: str
) -> dict[str, Any]:
    """A continuation run is genuine when its head's backfill created it: then it may run a segment."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    head = str((continues or {}).get("head_run_id")) if isinstance(continues, dict) else ""
    segment = continues.get("segment") if isinstance(continues, dict) else None
    head_run = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == head))
    genuine = (
        run_type == DagRunType.OPERATOR_TRIGGERED.value
        and isinstance(segment, int)
        and run_id == continuation_run_id(head, segment)
        and head_run is not None
        and head_run.triggering_user_name == requester
        and ledger.entry(session, head) is not None
    )
    if not genuine:
        raise _refused(
            InvalidRequest(
                [_field(CONTINUES_KEY, continues, "is the controller's own key", "no such key in a request")]
            )
        )
    return {"status": "continuation", "head_run_id": head, "segment": segment}


def _field(name: str, value: Any, problem: str, accepted: str = "a request without it") -> FieldError:
    return FieldError(name, value, problem, accepted)


@app.post("/api/dags/{dag_id}/dates", dependencies=[Depends(requires_access_dag(method="GET"))])
def scheduled_dates(dag_id: str, body: dict[str, Any], session: SessionDep) -> dict[str, Any]:
    """The logical dates, run_after and data intervals a request covers, oldest first."""
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


app.include_router(backfills_page)
app.include_router(backfill_actions)
