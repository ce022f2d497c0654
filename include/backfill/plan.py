"""What the controller does to each date: trigger a new run, clear an existing one, or skip it.

A plan is decided once, from the scheduled dates and the target's existing runs, before anything
changes; it is then carried out chunk by chunk.

Chunking and the sliding window, worked through: 7 dates, ``chunk_size=3``, ``max_active_runs=4``.
The chunks are ``[d0 d1 d2] [d3 d4 d5] [d6]``, one mapped ``trigger`` task instance each, run one
after another. A chunk starts its dates in order, each as soon as fewer than four runs of this
backfill are queued or running (:func:`room`): d0..d3 at once, d4 when the first of them has
finished, and so on, so the window stays full and never holds more than four. Before a chunk
starts, the failed dates so far are counted against ``max_failed_dates``; once it is reached, no
further chunk starts and the dates left are ``cancelled``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pendulum import DateTime

from include.backfill.request import BackfillRequest, MissingRuns, Reprocess
from include.backfill.schedule import ScheduledDate
from include.backfill.selection import TIKey, describe, to_clear

#: Prefix of the run_id of every run the controller creates: ``backfill_controller__<logical date ISO>``.
RUN_ID_PREFIX = "backfill_controller__"

IN_FLIGHT_STATES = frozenset({"queued", "running"})
FINISHED_STATES = frozenset({"success", "failed"})


class Action(StrEnum):
    TRIGGERED = "triggered"
    """No run existed: a new one is created."""
    CLEARED = "cleared"
    """An existing run is cleared and runs again under its own run_id."""
    SKIPPED = "skipped"
    """Left alone (the report says why)."""
    CANCELLED = "cancelled"
    """Planned, but not started because the failure budget ran out."""


ACTING = frozenset({Action.TRIGGERED, Action.CLEARED})


@dataclass(frozen=True)
class ExistingRun:
    run_id: str
    state: str
    logical_date: DateTime
    end_date: str | None = None


@dataclass(frozen=True)
class DatePlan:
    """The decision for one logical date."""

    date: ScheduledDate
    run_id: str
    action: Action
    why: str = ""
    existing_state: str | None = None
    existing_end_date: str | None = None
    task_ids: tuple[Any, ...] | None = None
    """For a task-subset clear: the ``task_ids`` to clear (see :func:`selection.to_clear`)."""

    @property
    def logical_date(self) -> DateTime:
        return self.date.logical_date

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.date.to_dict(),
            "run_id": self.run_id,
            "action": self.action.value,
            "why": self.why,
            "existing_state": self.existing_state,
            "existing_end_date": self.existing_end_date,
            "task_ids": list(self.task_ids) if self.task_ids is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatePlan:
        return cls(
            date=ScheduledDate.from_dict(dict(data)),
            run_id=data["run_id"],
            action=Action(data["action"]),
            why=data.get("why", ""),
            existing_state=data.get("existing_state"),
            existing_end_date=data.get("existing_end_date"),
            task_ids=tuple(data["task_ids"]) if data.get("task_ids") is not None else None,
        )


def new_run_id(logical_date: DateTime) -> str:
    """The run_id of a run the controller creates; deterministic, so a retry finds its own run.

    >>> from include.backfill.request import parse_datetime
    >>> new_run_id(parse_datetime("2024-01-31"))
    'backfill_controller__2024-01-31T00:00:00+00:00'
    """
    return f"{RUN_ID_PREFIX}{logical_date.in_timezone('UTC').isoformat()}"


def decide(
    dates: Sequence[ScheduledDate],
    existing: Mapping[DateTime, ExistingRun],
    request: BackfillRequest,
    *,
    selected_tasks: Sequence[str] = (),
    ti_states: Mapping[str, Mapping[TIKey, str | None]] | None = None,
) -> list[DatePlan]:
    """Decide each date's action, in the order the dates will be run.

    For a task-subset request (``request.task_regex``), ``selected_tasks`` are the tasks to re-run
    and ``ti_states`` the task instance states of each existing run, by run_id.
    """
    plans = []
    for date in dates:
        run = existing.get(date.logical_date)
        if request.is_task_subset:
            states = (ti_states or {}).get(run.run_id, {}) if run else {}
            plans.append(_decide_subset(date, run, request, selected_tasks, states))
        else:
            plans.append(_decide_one(date, run, request.reprocess))
    plans.sort(key=lambda p: p.logical_date, reverse=request.run_backwards)
    return plans


def _decide_subset(
    date: ScheduledDate,
    run: ExistingRun | None,
    request: BackfillRequest,
    selected: Sequence[str],
    states: Mapping[TIKey, str | None],
) -> DatePlan:
    if run is None:
        if request.missing_runs is MissingRuns.TRIGGER:
            why = "no run yet: runs the whole DAG"
            return DatePlan(date, new_run_id(date.logical_date), Action.TRIGGERED, why)
        return DatePlan(
            date,
            new_run_id(date.logical_date),
            Action.SKIPPED,
            "no run yet, and Airflow 3 cannot run part of a DAG for a new date; "
            "set missing_runs=trigger to run the whole DAG for such dates",
        )
    if run.state in IN_FLIGHT_STATES:
        return _existing(date, run, Action.SKIPPED, f"in flight: its run is {run.state}; not touched")
    task_ids = to_clear(states, selected, request.reprocess)
    if not task_ids:
        return _existing(
            date, run, Action.SKIPPED, f"no selected task instance to re-run (reprocess={request.reprocess})"
        )
    why = f"re-runs {', '.join(describe(task_ids))} (reprocess={request.reprocess})"
    return DatePlan(date, run.run_id, Action.CLEARED, why, run.state, run.end_date, tuple(task_ids))


def _existing(date: ScheduledDate, run: ExistingRun, action: Action, why: str) -> DatePlan:
    return DatePlan(date, run.run_id, action, why, run.state, run.end_date)


def _decide_one(date: ScheduledDate, run: ExistingRun | None, reprocess: Reprocess) -> DatePlan:
    if run is None:
        return DatePlan(date, new_run_id(date.logical_date), Action.TRIGGERED, "no run yet")

    def existing(action: Action, why: str) -> DatePlan:
        return _existing(date, run, action, why)

    if run.state in IN_FLIGHT_STATES:
        return existing(Action.SKIPPED, f"in flight: its run is {run.state}; not touched")
    if run.state == "failed" and reprocess in (Reprocess.FAILED, Reprocess.ALL):
        return existing(Action.CLEARED, f"run failed (reprocess={reprocess})")
    if run.state == "success" and reprocess is Reprocess.ALL:
        return existing(Action.CLEARED, "reprocess=all")
    hint = {"failed": "reprocess=failed or all re-runs it", "success": "reprocess=all re-runs it"}
    return existing(Action.SKIPPED, f"run exists ({run.state}); {hint.get(run.state, 'left as it is')}")


def acting(plans: Sequence[DatePlan]) -> list[DatePlan]:
    """The dates the controller triggers or clears, in run order (their index is the map index)."""
    return [p for p in plans if p.action in ACTING]


def chunk_count(size: int, chunk_size: int) -> int:
    """
    >>> chunk_count(7, 3), chunk_count(6, 3), chunk_count(0, 3)
    (3, 2, 0)
    """
    return -(-size // chunk_size)


def chunk_bounds(chunk_index: int, chunk_size: int, total: int) -> range:
    """Indexes (into :func:`acting`) of one chunk; the last chunk may be short.

    >>> list(chunk_bounds(2, 3, 7))
    [6]
    """
    return range(chunk_index * chunk_size, min(total, (chunk_index + 1) * chunk_size))


def chunk_of(position: int, chunk_size: int) -> int:
    """The chunk (map index of the ``trigger`` task) that acts on the date at ``position`` of :func:`acting`.

    >>> [chunk_of(i, 3) for i in range(7)]
    [0, 0, 0, 1, 1, 1, 2]
    """
    return position // chunk_size


def date_states(chunk_states: Mapping[int, str | None], dates: int, chunk_size: int) -> dict[int, str | None]:
    """Each acting date's trigger state: the state of the ``trigger`` task instance of its chunk.

    >>> date_states({0: "success", 1: "running"}, 5, 2)
    {0: 'success', 1: 'success', 2: 'running', 3: 'running', 4: None}
    """
    return {i: chunk_states.get(chunk_of(i, chunk_size)) for i in range(dates)}


def room(open_runs: int, max_active_runs: int) -> int:
    """How many more runs a backfill may start now: the sliding window of ``max_active_runs``.

    >>> room(3, 10), room(10, 10), room(12, 10)
    (7, 0, 0)
    """
    return max(0, max_active_runs - open_runs)
