"""The controller's Python tasks: ``plan`` (validate, expand, decide) and ``report`` (one result)."""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from backfill_controller.contract import CONTINUES_KEY, Task, XCom, continuation_run_id
from backfill_controller.domain.plan import (
    DatePlan,
    Execution,
    acting,
    chunk_bounds,
    chunk_count,
    feeding,
)
from backfill_controller.domain.report import audit_note, build_report, render_table
from backfill_controller.domain.request import BackfillRequest, OnOverlap, parse_request
from backfill_controller.domain.segments import continuation_conf, merge_reports, split
from backfill_controller.domain.settings import Limits, segment_size, timeout_minutes
from backfill_controller.domain.state import SegmentFacts, segment_dates
from backfill_controller.worker.notify import notify_end
from backfill_controller.worker.progress import segment_facts

log = logging.getLogger(__name__)


class OverlapWait(Exception):
    """Another running backfill has some of this one's dates, and the request says to wait."""


def plan_backfill(**context: Any) -> list[dict[str, Any]]:
    """Have the api-server check the request for its requester and decide each date; store the plan.

    Nothing changes here. The api-server plans this run for the user who requested it (its
    ``triggering_user_name``; see :mod:`backfill_controller.server.controller_runs`): a bad or
    forbidden request fails this task with every problem named, and pushes the message as XCom
    ``error`` so ``report`` can return it. Raises :class:`OverlapWait` when the request waits for
    an overlapping backfill. Returns the ``trigger`` task's mapped kwargs (one dict per chunk of the
    dates to act on); the rest of the plan goes to XComs named after it
    (:class:`backfill_controller.contract.XCom`).
    """
    from backfill_controller.client.airflow_api import AirflowApi
    from backfill_controller.client.rest import ApiError

    ti, dag_run = context["ti"], context["dag_run"]
    conf = dict(dag_run.conf or {})
    started = time.monotonic()
    try:
        answer = AirflowApi.from_connection().plan_run(dag_run.run_id)
    except ApiError as exc:
        if exc.status not in (403, 404, 409, 422):
            raise
        message = exc.detail
        ti.xcom_push(key=XCom.ERROR, value=message)
        raise AirflowFailException(message) from None
    if answer["status"] == "continuation":  # carry out one segment of the head run's plan
        head, segment = str(answer["head_run_id"]), int(answer["segment"])
        stored = ti.xcom_pull(task_ids=Task.PLAN, run_id=head, key=XCom.REQUEST)
        request = parse_request(stored, limits=Limits.from_config(), now=None)
        plans = [
            DatePlan.from_dict(p)
            for p in ti.xcom_pull(task_ids=Task.PLAN, run_id=head, key=XCom.segment(segment))
        ]
        failed_before = int(conf[CONTINUES_KEY].get("failed_before", 0))
        feed = Execution.from_dict(ti.xcom_pull(task_ids=Task.PLAN, run_id=head, key=XCom.EXECUTION)).feeding
    else:
        if answer["status"] == "overlap":
            if conf.get("on_overlap") == OnOverlap.WAIT.value:
                raise OverlapWait(answer["message"])
            message = f"{answer['message']}; wait for it, cancel it, or set on_overlap=wait"
            ti.xcom_push(key=XCom.ERROR, value=message)
            raise AirflowFailException(message)
        request = parse_request(answer["request"], limits=Limits.from_config(), now=None)
        all_plans = [DatePlan.from_dict(p) for p in answer["plans"]]
        if request.task_regex is not None:
            log.info("task_regex %r selects %s", request.task_regex, ", ".join(answer["selected_tasks"]))
        feed = feeding(
            request.max_active_runs,
            answer["target_max_active_runs"],
            chunk_size=request.chunk_size if conf.get("chunk_size") is not None else None,
            failure_budget=request.max_failed_dates is not None,
        )
        size = request.segment_size or segment_size()
        parts = split(all_plans, size)
        plans, failed_before = parts[0], 0
        for index, part in enumerate(parts[1:], start=1):
            ti.xcom_push(key=XCom.segment(index), value=[p.to_dict() for p in part])
        ti.xcom_push(key=XCom.SEGMENTS, value=len(parts))
        log.info("planned %d dates in %d segment(s) of at most %d", len(all_plans), len(parts), size)
        ti.xcom_push(key=XCom.STATS, value=_stats(started, len(all_plans)))
    act = [] if request.dry_run else acting(plans)
    log.info("this run acts on %d of its %d dates", len(act), len(plans))
    facts = {
        XCom.REQUEST: request.to_dict(),
        XCom.PLANS: [p.to_dict() for p in plans],
        XCom.RUN_IDS: [p.run_id for p in act],
        XCom.EXECUTION: Execution(
            target_dag_id=request.target_dag_id,
            feeding=feed,
            max_failed_dates=request.max_failed_dates,
            failed_before=failed_before,
            deadline=time.time() + 60 * (request.timeout_minutes or timeout_minutes()),
            total=len(act),
        ).to_dict(),
    }
    for key, value in facts.items():
        ti.xcom_push(key=key, value=value)
    note = audit_note(request.reason, getattr(dag_run, "triggering_user_name", None))
    chunk = feed.chunk_size
    return [_chunk_kwargs(request, act, k, chunk, note) for k in range(chunk_count(len(act), chunk))]


def _stats(started: float, dates: int) -> dict[str, float]:
    """How long planning took and the task's peak memory (reported by the benchmark and tests)."""
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "dates": dates,
        "plan_seconds": round(time.monotonic() - started, 2),
        "peak_rss_mb": round(peak_mb),
    }


def list_segments(**context: Any) -> list[dict[str, Any]]:
    """Kwargs of the ``segment`` task: one continuation run per segment after the first."""
    ti, dag_run = context["ti"], context["dag_run"]
    count = ti.xcom_pull(task_ids=Task.PLAN, key=XCom.SEGMENTS) or 1
    conf = dict(dag_run.conf or {})
    if conf.get("dry_run"):
        return []  # a dry run changes nothing: its report reads every segment's plan itself
    return [
        {
            "trigger_run_id": continuation_run_id(dag_run.run_id, k),
            "conf": continuation_conf(conf, dag_run.run_id, k),
            "segment_index": k,
        }
        for k in range(1, count)
    ]


def _later_segments(ti: Any, head_run_id: str, request: BackfillRequest) -> list[dict[str, Any]]:
    """The reports of the continuation runs; a segment that never ran reports its dates cancelled.

    A dry run has no continuation runs: its segments' reports are built from the plan alone.
    """
    parts = []
    for k in range(1, ti.xcom_pull(task_ids=Task.PLAN, key=XCom.SEGMENTS) or 1):
        run_id = continuation_run_id(head_run_id, k)
        part = (
            None
            if request.dry_run
            else ti.xcom_pull(task_ids=Task.REPORT, run_id=run_id, key=XCom.SEGMENT_REPORT)
        )
        if part is None:
            stored = ti.xcom_pull(task_ids=Task.PLAN, key=XCom.segment(k))
            plans = [DatePlan.from_dict(p) for p in stored]
            never = segment_dates(SegmentFacts(stored, [], 1, {}, {}, {}, finished=True))
            part = build_report(request, plans, never, controller_run_id=run_id)
        parts.append(part)
    return parts


def _chunk_kwargs(
    request: BackfillRequest, act: list[DatePlan], chunk: int, chunk_size: int, note: str
) -> dict[str, Any]:
    """The mapped kwargs of ``trigger`` for one chunk: what is common once, then each date.

    The conf (up to 64 KB) is not repeated per chunk: the task reads it from the ``request`` XCom.
    """
    bounds = chunk_bounds(chunk, chunk_size, len(act))
    plans = [act[i] for i in bounds]
    first, last = plans[0].logical_date.isoformat(), plans[-1].logical_date.isoformat()
    return {
        "trigger_dag_id": request.target_dag_id,
        "note": note,
        "chunk_index": chunk,
        "first_position": bounds.start,
        "dates_label": first if len(plans) == 1 else f"{first} .. {last}",
        "dates": [
            {
                "trigger_run_id": p.run_id,
                "logical_date": p.logical_date.isoformat(),
                "run_after": p.date.run_after.isoformat(),
                "reset_dag_run": p.action == "cleared",
                "clear_task_ids": list(p.task_ids) if p.task_ids is not None else None,
                "planned_end_date": p.existing_end_date,
            }
            for p in plans
        ],
    }


def _settle(run_id: str) -> None:
    """Have the api-server keep how the backfill ended, so the list reads no date of it again; the
    list reads its dates live when this fails."""
    from backfill_controller.client.airflow_api import AirflowApi
    from backfill_controller.client.rest import ApiError

    try:
        AirflowApi.from_connection().settle(run_id)
    except (ApiError, OSError) as exc:
        log.warning("the Backfills list will read this backfill's dates live: %s", exc)


def report_backfill(**context: Any) -> dict[str, Any]:
    """Return the result (XCom ``return_value``), log a table, fail unless every date succeeded."""
    ti, dag_run = context["ti"], context["dag_run"]
    triggered_by = getattr(dag_run, "triggering_user_name", None)
    continues = (dag_run.conf or {}).get(CONTINUES_KEY)
    error = ti.xcom_pull(task_ids=Task.PLAN, key=XCom.ERROR)
    stored = ti.xcom_pull(task_ids=Task.PLAN, key=XCom.REQUEST)
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
        request = parse_request(stored, limits=Limits.from_config(), now=None)
        stored_plans = ti.xcom_pull(task_ids=Task.PLAN, key=XCom.PLANS)
        plans = [DatePlan.from_dict(p) for p in stored_plans]
        dates = None
        if not request.dry_run:
            run_ids = ti.xcom_pull(task_ids=Task.PLAN, key=XCom.RUN_IDS) or []
            execution = Execution.from_dict(ti.xcom_pull(task_ids=Task.PLAN, key=XCom.EXECUTION))
            dates = segment_dates(
                segment_facts(ti, ti.run_id, execution, stored_plans, run_ids, finished=True)
            )
        report = build_report(
            request, plans, dates, controller_run_id=dag_run.run_id, triggered_by=triggered_by
        )
        ti.xcom_push(key=XCom.SEGMENT_REPORT, value=report)
        if not continues:
            report = merge_reports([report, *_later_segments(ti, dag_run.run_id, request)])
        log.info("backfill of %s:\n%s", request.target_dag_id, render_table(report))
    if not continues:
        _settle(dag_run.run_id)
    if not continues and not report.get("dry_run"):
        requested = (stored or dag_run.conf or {}).get("notify")
        report["notified"] = notify_end(report, requested, context)
    if not report["success"]:
        # A failing task returns nothing, so the result is pushed before failing.
        ti.xcom_push(key=XCom.RETURN_VALUE, value=report)
        why = report.get("error") or ", ".join(report["failed_dates"] + report.get("unfinished_dates", []))
        why = why or "dates cancelled"
        raise AirflowFailException(f"backfill failed: {why}")
    return report
