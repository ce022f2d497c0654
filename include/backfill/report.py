"""How each date ended, the failure budget, and the one result a caller waits on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from include.backfill.plan import Action, DatePlan
from include.backfill.request import BackfillRequest
from include.backfill.selection import describe

PENDING = "pending"
#: A date whose trigger task failed (e.g. the target refused the conf): it counts as failed.
TRIGGER_FAILED = "trigger_failed"
CANCELLED = "cancelled"

_TI_DONE_OK = "success"
_TI_CANCELLED = frozenset({"skipped"})
_TI_FAILED = frozenset({"failed", "upstream_failed", "removed"})
#: A chunk's task instance that has not finished: running, or on its way to a worker again
#: (a retry after a try that already triggered some dates).
_TI_TRIGGERING = frozenset({"running", "deferred", "scheduled", "queued", "up_for_retry", "restarting"})
FAILED_OUTCOMES = frozenset({"failed", TRIGGER_FAILED})


def audit_note(reason: str, user: str | None) -> str:
    """The run note of every target run a backfill creates or clears: who asked, and why.

    >>> audit_note("bad API data", "alice")
    'backfill_controller (alice): bad API data'
    >>> audit_note("", None)
    'backfill_controller'
    """
    who = f" ({user})" if user else ""
    return f"backfill_controller{who}: {reason}" if reason else f"backfill_controller{who}"


def outcome(trigger_state: str | None, run_state: str | None) -> str:
    """One date's progress from its trigger task's state and its run's state.

    >>> outcome("success", "running"), outcome("success", "failed"), outcome("skipped", None)
    ('pending', 'failed', 'cancelled')
    >>> outcome("deferred", "success"), outcome("failed", None)
    ('pending', 'trigger_failed')
    """
    if trigger_state in _TI_CANCELLED:
        return CANCELLED
    if trigger_state in _TI_FAILED:
        return TRIGGER_FAILED
    if trigger_state != _TI_DONE_OK or run_state in (None, "queued", "running"):
        return PENDING
    return str(run_state)


def acted_state(trigger_state: str | None, action: str, run_state: str | None) -> str | None:
    """A date's trigger state as live progress reads it while its chunk's task is still at work.

    A chunk's task triggers its dates one by one, in one try or across retries; a *new* run
    (action ``triggered``) that exists was created by it, so the date counts as triggered
    already, whatever unfinished state the task is in. A cleared run cannot be told apart from
    its old self until the task has finished.

    >>> acted_state("running", "triggered", "queued"), acted_state("deferred", "cleared", "success")
    ('success', 'deferred')
    """
    if trigger_state in _TI_TRIGGERING and action == "triggered" and run_state is not None:
        return _TI_DONE_OK
    return trigger_state


def failed_count(outcomes: Mapping[str, str]) -> int:
    return sum(1 for o in outcomes.values() if o in FAILED_OUTCOMES)


def build_report(
    request: BackfillRequest,
    plans: Sequence[DatePlan],
    outcomes: Mapping[str, str],
    *,
    controller_run_id: str = "",
    triggered_by: str | None = None,
) -> dict[str, Any]:
    """The controller's result. ``outcomes`` maps the run_id of each date acted on to how it ended.

    ``success`` is true if and only if every date acted on ended ``success`` (a dry run
    succeeds when it could be planned).
    """
    dates = []
    for plan in plans:
        action, state = plan.action.value, plan.existing_state
        why = plan.why
        if plan.action in (Action.TRIGGERED, Action.CLEARED) and not request.dry_run:
            result = outcomes.get(plan.run_id, PENDING)
            if result == CANCELLED:
                action, why = Action.CANCELLED.value, "not started: max_failed_dates reached"
            else:
                state = result
        dates.append(
            {
                "logical_date": plan.logical_date.isoformat(),
                "run_id": plan.run_id,
                "action": action,
                "state": state,
                "why": why,
                "task_ids": describe(plan.task_ids) if plan.task_ids is not None else None,
                "data_interval_start": plan.date.data_interval_start.isoformat(),
                "data_interval_end": plan.date.data_interval_end.isoformat(),
            }
        )
    actions = Counter(d["action"] for d in dates)
    # A cancelled date never ran here: its state is its previous run's and counts for nothing.
    acted = [] if request.dry_run else [d for d in dates if d["action"] in (Action.TRIGGERED, Action.CLEARED)]
    states = Counter(str(d["state"]) for d in acted)
    failed = [d["logical_date"] for d in acted if d["state"] in FAILED_OUTCOMES]
    unfinished = [d["logical_date"] for d in acted if d["state"] == PENDING]
    success = request.dry_run or (
        all(d["state"] == "success" for d in acted) and not actions.get(Action.CANCELLED)
    )
    return {
        "dag_id": request.target_dag_id,
        "controller_run_id": controller_run_id,
        "triggered_by": triggered_by,
        "dry_run": request.dry_run,
        "reason": request.reason,
        "success": success,
        "request": request.to_dict(),
        "counts": {
            "dates": len(dates),
            **{a.value: actions.get(a.value, 0) for a in Action},
            "succeeded": states.get("success", 0),
            "failed": len(failed),
        },
        "failed_dates": failed,
        "unfinished_dates": unfinished,
        "dates": dates,
    }


def render_table(report: Mapping[str, Any], limit: int = 400) -> str:
    """A fixed-width table of the report, for task logs and terminals."""
    rows = [("logical_date", "action", "state", "run_id", "why")]
    for d in report["dates"][:limit]:
        rows.append((d["logical_date"], d["action"], str(d["state"] or "-"), d["run_id"], d["why"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=False)) + "  " + r[4] for r in rows]
    if len(report["dates"]) > limit:
        lines.append(f"... {len(report['dates']) - limit} more dates in the XCom report")
    counts = report["counts"]
    verdict = "DRY RUN" if report["dry_run"] else ("SUCCESS" if report["success"] else "FAILED")
    lines.append(
        f"{verdict}: {counts['dates']} dates of {report['dag_id']}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "dates")
    )
    return "\n".join(lines)
