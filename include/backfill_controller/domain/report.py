"""How each date ended, the failure budget, and the one result a caller waits on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from backfill_controller.domain.plan import Action, DatePlan
from backfill_controller.domain.request import BackfillRequest
from backfill_controller.domain.selection import describe
from backfill_controller.domain.state import (
    FAILED_DATES,
    UNFINISHED_DATES,
    DateOutcome,
    DateState,
    SegmentFacts,
    acted_on,
    count,
    segment_dates,
    window_complete,
)


def audit_note(reason: str, user: str | None) -> str:
    """The run note of every target run a backfill creates or clears: who asked, and why.

    >>> audit_note("bad API data", "alice")
    'backfill_controller (alice): bad API data'
    >>> audit_note("", None)
    'backfill_controller'
    """
    who = f" ({user})" if user else ""
    return f"backfill_controller{who}: {reason}" if reason else f"backfill_controller{who}"


def build_report(
    request: BackfillRequest,
    plans: Sequence[DatePlan],
    dates: Sequence[DateOutcome] | None = None,
    *,
    controller_run_id: str = "",
    triggered_by: str | None = None,
) -> dict[str, Any]:
    """The controller's result, from where each date ended
    (:func:`backfill_controller.domain.state.segment_dates`; None: a dry run's, from the plan alone).

    Each date's ``action`` is what the backfill did, its ``state`` where it is: a date left alone
    is where its run is (``skipped``: it has none). ``success`` is true if and only if every date
    acted on ended ``success`` (a dry run succeeds when it could be planned); ``failed_dates``,
    ``unfinished_dates`` and the counts ``succeeded`` and ``failed`` are of the dates acted on
    too, so a date left alone never fails the backfill. ``window_complete`` is true if and only if
    every date, acted on or left alone, has a successful run
    (:func:`backfill_controller.domain.state.window_complete`; for a dry run: has one already).
    """
    if dates is None or request.dry_run:
        facts = SegmentFacts([p.to_dict() for p in plans], [], 1, {}, {}, {}, finished=True, dry_run=True)
        dates = segment_dates(facts)
    by_run_id = {p.run_id: p for p in plans}
    rows = []
    for date in dates:
        plan = by_run_id.get(date.run_id) or next(
            p for p in plans if p.logical_date.isoformat() == date.logical_date
        )
        rows.append(
            {
                **date.to_dict(),
                "planned_run_id": plan.run_id,
                "task_ids": describe(plan.task_ids) if plan.task_ids is not None else None,
                "data_interval_start": plan.date.data_interval_start.isoformat(),
                "data_interval_end": plan.date.data_interval_end.isoformat(),
            }
        )
    actions = Counter(d.action for d in dates)
    tally = count(dates)
    own = acted_on(dates)
    failed = [d.logical_date for d in own if d.state in FAILED_DATES]
    unfinished = [d.logical_date for d in own if d.state in UNFINISHED_DATES]
    success = request.dry_run or all(d.state == DateState.SUCCESS for d in own)
    return {
        "dag_id": request.target_dag_id,
        "controller_run_id": controller_run_id,
        "triggered_by": triggered_by,
        "dry_run": request.dry_run,
        "reason": request.reason,
        "success": success,
        "window_complete": window_complete(dates),
        "request": request.to_dict(),
        "counts": {
            "dates": len(dates),
            **{a.value: actions.get(a, 0) for a in Action},
            "succeeded": tally.succeeded,
            "failed": tally.failed,
        },
        "failed_dates": failed,
        "unfinished_dates": unfinished,
        "dates": rows,
    }


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as fixed-width lines: every column padded to its widest cell but the last.

    >>> aligned([("a", "bb", "why"), ("ccc", "d", "")])
    ['a    bb  why', 'ccc  d   ']
    """
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]) for row in rows]


def date_table(dates: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per date (a report's ``dates`` or the Backfills page's ``cells``), under a header."""
    rows = [("logical_date", "action", "state", "run_id", "why")]
    for d in dates:
        rows.append((d["logical_date"], d["action"], str(d["state"] or "-"), d["run_id"], d["why"]))
    return aligned(rows)


def render_table(report: Mapping[str, Any], limit: int = 400) -> str:
    """A fixed-width table of the report, for task logs and terminals: one line per date (what
    the backfill did, and where the date is: a date left alone whose run failed reads ``skipped``
    ``failed``), the verdict, and whether every date of the window has a successful run."""
    lines = date_table(report["dates"][:limit])
    if len(report["dates"]) > limit:
        lines.append(f"... {len(report['dates']) - limit} more dates in the XCom report")
    counts = report["counts"]
    verdict = "DRY RUN" if report["dry_run"] else ("SUCCESS" if report["success"] else "FAILED")
    lines.append(
        f"{verdict}: {counts['dates']} dates of {report['dag_id']}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "dates")
    )
    if "window_complete" in report:
        lines.append(_window_line(bool(report["window_complete"]), bool(report["dry_run"])))
    return "\n".join(lines)


def _window_line(complete: bool, dry_run: bool) -> str:
    """Whether every date of the window has a successful run, in one line of the table.

    >>> _window_line(False, False)
    'window: some dates have no successful run (see their state)'
    >>> _window_line(True, True)
    'window: every date has a successful run already'
    """
    if complete:
        return "window: every date has a successful run" + (" already" if dry_run else "")
    return "window: some dates have no successful run (see their state)"
