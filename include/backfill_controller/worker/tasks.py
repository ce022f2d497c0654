"""The controller's Python tasks: ``plan`` (have the api-server plan the run), ``segments`` (the
continuation runs to start) and ``report`` (one result). Each takes its work from the backfill's
record (:mod:`backfill_controller.worker.work`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from backfill_controller.contract import CONTINUES_KEY, Task, XCom
from backfill_controller.domain.plan import DatePlan
from backfill_controller.domain.report import build_report, render_table
from backfill_controller.domain.request import OnOverlap
from backfill_controller.domain.segments import merge_reports
from backfill_controller.domain.state import SegmentFacts, segment_dates
from backfill_controller.worker.notify import notify_end
from backfill_controller.worker.progress import segment_facts
from backfill_controller.worker.work import (
    PARTS,
    Work,
    api,
    kept_chunks,
    mapped_kwargs,
    refuse,
    remember,
    work_if_planned,
)

log = logging.getLogger(__name__)


class OverlapWait(Exception):
    """Another running backfill has some of this one's dates, and the request says to wait."""


def plan_backfill(**context: Any) -> list[dict[str, Any]]:
    """Have the api-server plan this run for its requester; return the chunks ``trigger`` maps over.

    Nothing changes here. The api-server plans the run for the user who requested it (its
    ``triggering_user_name``; see :mod:`backfill_controller.server.controller_runs`) and records
    the backfill; a continuation run gets its segment of its head's record. A bad or forbidden
    request fails this task with every problem named, and pushes the message as XCom ``error`` so
    ``report`` can return it. Raises :class:`OverlapWait` when the request waits for an
    overlapping backfill.

    Returns the ``trigger`` task's mapped kwargs: per chunk only its index and label
    (:func:`backfill_controller.worker.work.mapped_kwargs`); every task reads its work from the
    record. The plan is also pushed as XComs named after it
    (:class:`backfill_controller.contract.XCom`) for people and the Backfills page to read; no
    task of the controller reads them back.
    """
    from backfill_controller.client.rest import ApiError

    ti, dag_run = context["ti"], context["dag_run"]
    started = time.monotonic()
    try:
        answer = api().plan_run(dag_run.run_id)
    except ApiError as exc:
        if exc.status not in (403, 404, 409, 422):
            raise
        refuse(ti, exc.detail)
    if answer.get("status") == "overlap":
        # Whether to wait is the requester's choice, so it is read from the run's own conf.
        if (dag_run.conf or {}).get("on_overlap") == OnOverlap.WAIT.value:
            raise OverlapWait(answer["message"])
        refuse(ti, f"{answer['message']}; wait for it, cancel it, or set on_overlap=wait")
    if answer.get("status") != "planned":
        refuse(ti, f"the api-server answered the plan with {answer.get('status')!r}")
    try:
        work = remember(dag_run.run_id, answer["work"])
    except AirflowFailException as exc:
        refuse(ti, str(exc))
    request = work.request
    if request.task_regex is not None:
        log.info(
            "task_regex %r: the tasks it selects are cleared per date (see the plan)", request.task_regex
        )
    log.info(
        "segment %d of %d: this run acts on %d of its %d dates",
        work.segment,
        work.segments,
        len(work.acting),
        len(work.plans),
    )
    facts: dict[str, Any] = {
        XCom.REQUEST: request.to_dict(),
        XCom.PLANS: work.plan_dicts(),
        XCom.RUN_IDS: list(work.run_ids),
        XCom.SEGMENTS: work.segments,
    }
    if work.execution is not None:
        facts[XCom.EXECUTION] = work.execution.to_dict()
    if work.segment == 0:
        facts[XCom.STATS] = _stats(started, work.dates)
    for key, value in facts.items():
        ti.xcom_push(key=key, value=value)
    return mapped_kwargs(work)


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
    """Kwargs of the ``segment`` task: which segment each task instance starts as a continuation run
    (the head run only; the task reads the rest from the record)."""
    work = work_if_planned(context)
    if work is None or work.segment != 0 or work.request.dry_run:
        return []  # a dry run changes nothing: its report reads every segment's plan itself
    return [{"segment_index": k} for k in range(1, work.segments)]


def _later_segments(ti: Any, work: Work) -> tuple[list[dict[str, Any]], list[int]]:
    """The reports of the continuation runs; a segment that never ran reports its dates cancelled.

    A dry run has no continuation runs. The dates of a segment that never ran come from the
    backfill's record (the head run may read every segment's). Returns the reports, and the
    segments whose dates could not be read (reported with none).
    """
    from backfill_controller.client.rest import ApiError

    parts, unknown = [], []
    for k in range(1, work.segments):
        run_id = work.continuation_run_id(k)
        try:
            segment = api().work(work.head_run_id, segment=k)
            part, stored = (None if work.request.dry_run else segment.get("report")), segment["plans"]
        except (ApiError, KeyError) as exc:
            log.warning("segment %d could not be read: %s", k, exc)
            unknown.append(k)
            part, stored = None, []
        if part is None:
            plans = [DatePlan.from_dict(p) for p in stored]
            never = segment_dates(SegmentFacts(stored, [], 1, {}, {}, {}, finished=True))
            part = build_report(work.request, plans, never, controller_run_id=run_id)
            if not stored:  # dates unknown: not a success, unless nothing was to run (a dry run)
                part["success"] = work.request.dry_run
        parts.append(part)
    return parts, unknown


def _keep_report(run_id: str, report: dict[str, Any]) -> None:
    """Keep this run's part of the result in the backfill's record (a head run's report reads its
    continuations' parts there); for the head run the api-server then also keeps how the backfill
    ended, so the list reads no date of it again. The list reads the dates live when this fails."""
    from backfill_controller.client.rest import ApiError

    try:
        api().keep_report(run_id, report)
    except (ApiError, OSError) as exc:
        log.warning("the backfill's record does not hold this run's report: %s", exc)


def own_part(context: Any, work: Work) -> dict[str, Any]:
    """This controller run's part of the result, from its dates once they have all ended; built
    once per task process. A head run's report builds it while its last segment's report runs
    (the head's own runs ended before its continuations started), so that, once that report has
    ended, only the merge is left (:class:`backfill_controller.worker.operators.BackfillReportOperator`)."""
    ti, dag_run = context["ti"], context["dag_run"]
    if dag_run.run_id in PARTS:
        return PARTS[dag_run.run_id]
    dates = None
    if not work.request.dry_run and work.execution is not None:
        facts = segment_facts(
            ti,
            ti.run_id,
            work.execution,
            work.plan_dicts(),
            list(work.run_ids),
            kept_chunks(ti.run_id),
            finished=True,
        )
        dates = segment_dates(facts)
    part = build_report(
        work.request,
        list(work.plans),
        dates,
        controller_run_id=dag_run.run_id,
        triggered_by=getattr(dag_run, "triggering_user_name", None),
    )
    PARTS[dag_run.run_id] = part
    return part


def report_backfill(**context: Any) -> dict[str, Any]:
    """Return the result (XCom ``return_value``), log a table, fail unless every date succeeded.

    What the run did is read from its work in the backfill's record; a run with none (refused, or
    planning never finished) reports the plan task's ``error``.
    """
    from backfill_controller.client.rest import ApiError

    ti, dag_run = context["ti"], context["dag_run"]
    triggered_by = getattr(dag_run, "triggering_user_name", None)
    conf = dict(dag_run.conf or {})
    error = None
    try:
        work = work_if_planned(context)
    except (ApiError, OSError, AirflowFailException) as exc:
        work, error = None, f"the backfill's record could not be read: {exc}"
    if work is None:
        continues = CONTINUES_KEY in conf
        error = error or ti.xcom_pull(task_ids=Task.PLAN, key=XCom.ERROR)
        report: dict[str, Any] = {
            "dag_id": conf.get("dag_id"),
            "controller_run_id": dag_run.run_id,
            "triggered_by": triggered_by,
            "dry_run": bool(conf.get("dry_run")),
            "reason": conf.get("reason"),
            "success": False,
            "error": error or "planning did not finish; see the plan task's log",
            "window_complete": False,
            "counts": {"dates": 0},
            "failed_dates": [],
            "dates": [],
        }
        requested = conf.get("notify")
        log.error("backfill refused:\n%s", report["error"])
    else:
        continues = work.segment != 0
        request = work.request
        report = own_part(context, work)
        _keep_report(dag_run.run_id, report)
        if not continues:
            later, unknown = _later_segments(ti, work)
            report = merge_reports([report, *later])
            if unknown:
                report["unreported_segments"] = unknown
                log.warning("the dates of segment(s) %s, which never ran, could not be read", unknown)
        requested = list(request.notify) if request.notify is not None else None
        log.info("backfill of %s:\n%s", request.target_dag_id, render_table(report))
    if not continues and not report.get("dry_run"):
        report["notified"] = notify_end(report, requested, context)
    if not report["success"]:
        # A failing task returns nothing, so the result is pushed before failing.
        ti.xcom_push(key=XCom.RETURN_VALUE, value=report)
        why = report.get("error") or ", ".join(report["failed_dates"] + report.get("unfinished_dates", []))
        why = why or "dates cancelled"
        raise AirflowFailException(f"backfill failed: {why}")
    return report
