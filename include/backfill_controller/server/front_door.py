"""The front door: a backfill requested by a person or another system, checked and started for them.

* ``POST /backfill-controller/api/backfills`` (body: the controller's conf; :func:`start_backfill`)
  checks the request against the live target at once (:func:`backfill_controller.server.planner.plan_request`:
  every problem in one answer, 422; a missing right, 403; an overlapping backfill with
  ``on_overlap: refuse``, 409) and creates the ``backfill_controller`` run for the caller (201,
  with its run_id and links). With ``run_id``, a retry of a request that did create its run
  answers that run again.
* ``POST /backfill-controller/api/backfills/dry_run`` (same body; :func:`dry_run`) answers the
  per-date plan without creating anything.

The routes are in :mod:`backfill_controller.server.web`. The controller's own ``plan`` endpoint
(:mod:`backfill_controller.server.controller_runs`) plans, checks overlaps and claims dates as the
front door does, with :func:`plan`, :func:`clash`, :func:`claim` and :func:`refused`.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTROLLER_DAG_ID, URL_PREFIX, Task, XCom, is_controller_shaped
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.overlap import first_overlap, span_of
from backfill_controller.domain.plan import DatePlan, acting, first_window
from backfill_controller.domain.report import audit_note, build_report
from backfill_controller.domain.request import FieldError, InvalidRequest, OnOverlap
from backfill_controller.domain.rights import Right
from backfill_controller.server import access, ledger, record
from backfill_controller.server.planner import Planned, parse, plan_request

log = logging.getLogger(__name__)


def refused(exc: Exception) -> HTTPException:
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


def field_error(name: str, value: Any, problem: str, accepted: str = "a request without it") -> FieldError:
    """A refused field that no request may hold (a run id or key only the controller uses)."""
    return FieldError(name, value, problem, accepted)


def plan(
    conf: dict[str, Any], user: Any, session: Session, *, authorized: bool = False, read_first: bool = False
) -> Planned:
    """:func:`backfill_controller.server.planner.plan_request` of ``conf`` for ``user`` (routes
    that plan take a planning turn first: :func:`backfill_controller.server.admission.planning_turn`);
    a refusal raised as its HTTP answer (:func:`refused`). ``read_first`` (a dry run, which needs
    no more): a caller who may not read the target is refused before the request is parsed."""
    try:
        target = conf.get("dag_id") if isinstance(conf, dict) else None
        if read_first and isinstance(target, str):  # no right to read it: nothing is parsed
            access.require(user, target, [Right.READ_DAG, Right.READ_RUNS])
        return plan_request(parse(conf), user=user, session=session, authorized=authorized)
    except (access.Forbidden, InvalidRequest) as exc:
        raise refused(exc) from None


def clash(session: Session, planned: Planned, controller_run_id: str | None) -> str | None:
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
        select(DagRun.run_id).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.state.in_(sorted(OPEN_RUN)))
    ).all()
    others = {
        run_id: entry.span
        for run_id, entry in ledger.entries(session, [r for r in open_ids if r != controller_run_id]).items()
    }
    found = first_overlap(mine, others)
    if found is None:
        return None
    other, span = found
    return (
        f"dates {mine.first} .. {mine.last} overlap backfill {other} of {mine.target_dag_id} "
        f"({span.first} .. {span.last}), which is still running"
    )


def claim(session: Session, run_id: str, requester: str | None, planned: Planned) -> None:
    """Record the backfill in the ledger with the span of its dates (the target runs it acts on
    are its dates', kept with its plan: :func:`backfill_controller.server.record.keep`)."""
    request = planned.request
    span = None if request.dry_run else span_of(request.target_dag_id, planned.plans)
    ledger.record(session, ledger.Entry(run_id, request.target_dag_id, requester, span, ()))


def start_backfill(
    conf: dict[str, Any], user: Any, session: Session, request: Request, run_id: str | None = None
) -> dict[str, Any]:
    """Check ``conf`` for ``user`` and create the controller run (see the module)."""
    from airflow.models.dagrun import DagRun

    from backfill_controller.airflow_internals import create_run

    try:
        if missing := access.missing_rights(user, CONTROLLER_DAG_ID, [Right.CREATE_RUNS]):
            name = access.user_name(user)
            raise access.Forbidden(
                f"{name} may not trigger {CONTROLLER_DAG_ID}: missing right POST on its DAG runs", missing
            )
        if run_id is not None and is_controller_shaped(run_id):
            raise InvalidRequest(
                [field_error("run_id", run_id, "is shaped like the controller's own run ids")]
            )
        if run_id is not None and set(run_id) == {"."}:  # a URL would read it as a folder
            raise InvalidRequest(
                [
                    field_error(
                        "run_id", run_id, "is only dots", "letters, digits and _ . : + - (not only dots)"
                    )
                ]
            )
    except (access.Forbidden, InvalidRequest) as exc:
        raise refused(exc) from None
    planned = plan(conf, user, session)
    existing = None
    if run_id is not None:
        existing = session.scalar(
            select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id)
        )
        # Taken: by another user's run, or by a backfill whose run was deleted since (its record
        # keeps the run_id: a new backfill never gets an old one's).
        if (existing is None and ledger.entry(session, run_id) is not None) or (
            existing is not None and existing.triggering_user_name != access.user_name(user)
        ):
            raise HTTPException(409, {"message": f"run_id {run_id!r} is taken"})
    why = clash(session, planned, run_id)
    if existing is None and why and planned.request.on_overlap is OnOverlap.REFUSE:
        raise HTTPException(409, {"message": f"{why}; wait for it, cancel it, or set on_overlap=wait"})
    run = existing or create_run(session, CONTROLLER_DAG_ID, conf, user=user, request=request, run_id=run_id)
    if existing is None:
        requester = access.user_name(user)
        if why is None:  # authorized with the caller's own token; its dates claimed and planned once
            claim(session, run.run_id, requester, planned)
        entry = record.bind_head(session, run, planned.request.target_dag_id, requester)
        if why is None:
            head, execution = record.keep(session, entry, planned, conf)
            if not planned.request.dry_run:
                first = first_window(head, execution.feeding)
                start_first_runs(session, planned, first, run.triggering_user_name)
        # else it waits for the other backfill: its plan task plans and claims the dates later
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
            "page": f"{URL_PREFIX}/ui",
            "run": base,
            "report": f"{base}/taskInstances/{Task.REPORT}/xcomEntries/{XCom.RETURN_VALUE}",
        },
    }


def start_first_runs(session: Session, planned: Planned, dates: list[DatePlan], requester: str | None) -> int:
    """Create the runs of a new backfill's first window (:func:`backfill_controller.domain.plan.first_window`)
    in the request's own transaction, as its first ``trigger`` task would: they are queued when the
    request is answered, and the task meets them as its own. Returns how many were created. (The
    ``plan`` call of a run triggered with a conf does the same, for that run's requester.)

    Not while the controller is paused (nothing would feed the rest). The first date Airflow
    refuses (a run with its logical date appeared since planning, ...) ends this: the ``trigger``
    task then meets that date and the rest as ever, adopting or recording the refusal.
    """
    from airflow.models.dag import DagModel

    from backfill_controller.airflow_internals import create_target_run

    if not dates or session.scalar(select(DagModel.is_paused).where(DagModel.dag_id == CONTROLLER_DAG_ID)):
        return 0
    request = planned.request
    note = audit_note(request.reason, requester)
    for created, plan in enumerate(dates):
        try:
            create_target_run(
                session,
                request.target_dag_id,
                plan.run_id,
                logical_date=plan.logical_date,
                run_after=plan.date.run_after,
                conf=dict(request.conf),
                note=note,
                requester=requester,
            )
        except Exception as exc:  # noqa: BLE001 - the trigger task meets this date and says why
            log.info("date %s is left to the trigger task: %s", plan.logical_date.isoformat(), exc)
            return created
    return len(dates)


def dry_run(conf: dict[str, Any], user: Any, session: Session) -> dict[str, Any]:
    """What a backfill of ``conf`` would do to each date, for ``user``: the report a dry run of the
    controller returns, with the tasks a task-subset backfill would clear. Changes nothing."""
    planned = plan({**conf, "dry_run": True}, user, session, read_first=True)
    report = build_report(planned.request, planned.plans, triggered_by=access.user_name(user))
    return {**report, "selected_tasks": list(planned.selected_tasks)}
