"""The controller's Python tasks: ``plan`` (validate, expand, decide) and ``report`` (one result)."""

from __future__ import annotations

import logging
from typing import Any

import pendulum
from airflow.sdk.exceptions import AirflowFailException

from include.backfill.params import conf_errors
from include.backfill.plan import IN_FLIGHT_STATES, DatePlan, acting, chunk_count, decide
from include.backfill.report import build_report, render_table
from include.backfill.request import BackfillRequest, FieldError, InvalidRequest, parse_request
from include.backfill.selection import select_tasks
from include.backfill.settings import Limits
from include.controller.progress import Watch, observe

log = logging.getLogger(__name__)


def plan_backfill(**context: Any) -> list[dict[str, Any]]:
    """Validate the request against the live target and decide what happens to each date.

    Nothing changes here. A bad request fails this task with every problem named, and pushes the
    message as XCom ``error`` so ``report`` can return it. Returns the ``trigger`` task's mapped
    kwargs (one dict per date to act on); the rest of the plan goes to XComs named after it.
    """
    ti, dag_run = context["ti"], context["dag_run"]
    try:
        request, plans = _plan(dict(dag_run.conf or {}), ti.dag_id)
    except InvalidRequest as exc:
        ti.xcom_push(key="error", value=str(exc))
        raise AirflowFailException(str(exc)) from None
    act = [] if request.dry_run else acting(plans)
    log.info("planned %d dates, acting on %d", len(plans), len(act))
    facts = {
        "request": request.to_dict(),
        "plans": [p.to_dict() for p in plans],
        "run_ids": [p.run_id for p in act],
        "gate": {
            "target_dag_id": request.target_dag_id,
            "chunk_size": request.chunk_size,
            "chunks_in_flight": request.chunks_in_flight,
            "max_failed_dates": request.max_failed_dates,
            "total": len(act),
        },
        "chunks": list(range(chunk_count(len(act), request.chunk_size))),
    }
    for key, value in facts.items():
        ti.xcom_push(key=key, value=value)
    return [_trigger_kwargs(request, p, i // request.chunk_size) for i, p in enumerate(act)]


def list_chunks(**context: Any) -> list[int]:
    """The chunk indexes, for mapping ``wait`` (a mapped task can only expand a return value)."""
    return context["ti"].xcom_pull(task_ids="plan", key="chunks") or []


def _plan(conf: dict[str, Any], controller_dag_id: str) -> tuple[BackfillRequest, list[DatePlan]]:
    # Imported here: the API client is slow to import and the DAG file is parsed often.
    from include.controller.api import AirflowApi, ApiError

    now = pendulum.now("UTC")
    request = parse_request(conf, limits=Limits.from_env(), now=now, controller_dag_id=controller_dag_id)
    api = AirflowApi.from_connection()
    target = api.get_dag(request.target_dag_id)
    if target is None:
        raise InvalidRequest(
            [FieldError("dag_id", request.target_dag_id, "no such DAG in this Airflow", "an existing dag_id")]
        )
    if target.is_paused:
        raise InvalidRequest(
            [
                FieldError(
                    "dag_id",
                    request.target_dag_id,
                    "the target is paused, so its runs would wait forever; unpause it first "
                    f"(UI toggle, or `airflow dags unpause {request.target_dag_id}`)",
                    "an unpaused DAG",
                )
            ]
        )
    if errors := conf_errors(request.conf, target.params):
        raise InvalidRequest(errors)
    selected: tuple[str, ...] = ()
    if request.task_regex is not None:
        selected = select_tasks(
            api.task_graph(request.target_dag_id),
            request.task_regex,
            include_upstream=request.include_upstream,
            include_downstream=request.include_downstream,
        )
        log.info("task_regex %r selects %s", request.task_regex, ", ".join(selected))
    try:
        dates = api.expand_dates(request.target_dag_id, request.to_dict())
    except ApiError as exc:
        if exc.status != 422 or not isinstance(exc.detail, dict):
            raise
        field = exc.detail.get("field", "dates")
        raise InvalidRequest(
            [
                FieldError(
                    field, conf.get(field), exc.detail.get("message", ""), "dates of the target's schedule"
                )
            ]
        ) from None
    existing = {}
    if dates:
        first, last = min(d.logical_date for d in dates), max(d.logical_date for d in dates)
        existing = {r.logical_date: r for r in api.iter_runs(request.target_dag_id, first, last)}
    ti_states = None
    if selected:
        finished = [r.run_id for r in existing.values() if r.state not in IN_FLIGHT_STATES]
        ti_states = api.task_states(request.target_dag_id, finished, selected)
    return request, decide(dates, existing, request, selected_tasks=selected, ti_states=ti_states)


def _trigger_kwargs(request: BackfillRequest, plan: DatePlan, chunk_index: int) -> dict[str, Any]:
    return {
        "trigger_dag_id": request.target_dag_id,
        "trigger_run_id": plan.run_id,
        "logical_date": plan.logical_date.isoformat(),
        "run_after": plan.date.run_after.isoformat(),
        "reset_dag_run": plan.action == "cleared",
        "clear_task_ids": list(plan.task_ids) if plan.task_ids is not None else None,
        "conf": dict(request.conf),
        "note": _note(request),
        "chunk_index": chunk_index,
        "planned_end_date": plan.existing_end_date,
    }


def _note(request: BackfillRequest) -> str:
    return f"backfill_controller: {request.reason}" if request.reason else "backfill_controller"


def report_backfill(**context: Any) -> dict[str, Any]:
    """Return the result (XCom ``return_value``), log a table, fail unless every date succeeded."""
    ti, dag_run = context["ti"], context["dag_run"]
    triggered_by = getattr(dag_run, "triggering_user_name", None)
    error = ti.xcom_pull(task_ids="plan", key="error")
    stored = ti.xcom_pull(task_ids="plan", key="request")
    if error or stored is None:
        conf = dict(dag_run.conf or {})
        report: dict[str, Any] = {
            "dag_id": conf.get("dag_id"),
            "controller_run_id": dag_run.run_id,
            "triggered_by": triggered_by,
            "dry_run": bool(conf.get("dry_run")),
            "reason": conf.get("reason"),
            "success": False,
            "error": error or "planning did not finish; see the plan task's log",
            "counts": {"dates": 0},
            "failed_dates": [],
            "dates": [],
        }
        log.error("backfill refused:\n%s", report["error"])
    else:
        request = parse_request(stored, limits=Limits.from_env(), now=pendulum.now("UTC").add(years=100))
        plans = [DatePlan.from_dict(p) for p in ti.xcom_pull(task_ids="plan", key="plans")]
        outcomes: dict[str, str] = {}
        if not request.dry_run:
            run_ids = ti.xcom_pull(task_ids="plan", key="run_ids") or []
            outcomes = observe(Watch(ti.dag_id, ti.run_id, request.target_dag_id, list(enumerate(run_ids))))
        report = build_report(
            request, plans, outcomes, controller_run_id=dag_run.run_id, triggered_by=triggered_by
        )
        log.info("backfill of %s:\n%s", request.target_dag_id, render_table(report))
    if not report["success"]:
        # A failing task returns nothing, so the result is pushed before failing.
        ti.xcom_push(key="return_value", value=report)
        why = report.get("error") or ", ".join(report["failed_dates"]) or "dates cancelled"
        raise AirflowFailException(f"backfill failed: {why}")
    return report
