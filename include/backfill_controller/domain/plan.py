"""What the controller does to each date: trigger a new run, clear an existing one, or skip it.

A plan is decided once, from the scheduled dates and the target's existing runs, before anything
changes; it is then carried out chunk by chunk.

Chunking and the sliding window, worked through: 7 dates, ``chunk_size=3`` (asked for: by default a
chunk holds the whole segment, :func:`feeding`), ``max_active_runs=4``.
The chunks are ``[d0 d1 d2] [d3 d4 d5] [d6]``, one mapped ``trigger`` task instance each, run one
after another. A chunk starts its dates in order, each as soon as fewer than four runs of this
backfill are queued or running (:func:`room`): d0..d3 at once, d4 when the first of them has
finished, and so on, so the window stays full and never holds more than four (when the target's
own ``max_active_runs`` holds the runs back, the window is larger and also holds queued runs:
:func:`feeding`). Before a chunk
starts, the failed dates so far are counted against ``max_failed_dates``; once it is reached, no
further chunk starts and the dates left are ``cancelled``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from pendulum import DateTime

from backfill_controller.contract import TARGET_RUN_PREFIX
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.request import BackfillRequest, MissingRuns, Reprocess
from backfill_controller.domain.schedule import ScheduledDate
from backfill_controller.domain.segments import MAX_MAP_LENGTH
from backfill_controller.domain.selection import TIKey, describe, to_clear


class Action(StrEnum):
    TRIGGERED = "triggered"
    """No run existed: a new one is created."""
    CLEARED = "cleared"
    """An existing run is cleared and runs again under its own run_id."""
    SKIPPED = "skipped"
    """Left alone (the report says why)."""
    CANCELLED = "cancelled"
    """Planned, but never started (the failure budget ran out, or the backfill was cancelled)."""
    ADOPTED = "adopted"
    """Another run took the date's logical date before the backfill reached it: its outcome is
    that run's."""


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

    >>> from backfill_controller.domain.request import parse_datetime
    >>> new_run_id(parse_datetime("2024-01-31"))
    'backfill_controller__2024-01-31T00:00:00+00:00'
    """
    return f"{TARGET_RUN_PREFIX}{logical_date.in_timezone('UTC').isoformat()}"


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
    if run.state in OPEN_RUN:
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

    if run.state in OPEN_RUN:
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


def acting_run_ids(stored: Sequence[Mapping[str, Any]]) -> list[str]:
    """The run ids of :func:`acting` of plans as :meth:`DatePlan.to_dict` keeps them, unparsed."""
    return [str(p["run_id"]) for p in stored if p["action"] in ACTING]


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


def first_window(plans: Sequence[DatePlan], feed: Feeding) -> list[DatePlan]:
    """The dates a backfill starts first: the first chunk's, as many as may run at once
    (:attr:`Feeding.running_at_most`), up to the first date that is cleared rather than created.

    The front door creates these runs itself, so they are queued when the request is answered;
    the first ``trigger`` task then meets them as its own and goes on from there.

    >>> import pendulum
    >>> day = lambda d: pendulum.datetime(2024, 1, d, tz="UTC")
    >>> dates = [ScheduledDate(day(d), day(d + 1), day(d), day(d + 1)) for d in (1, 2, 3, 4)]
    >>> plans = decide(dates, {}, BackfillRequest("sales", dates=(day(1),)))
    >>> [p.logical_date.day for p in first_window(plans, feeding(2, 16))]
    [1, 2]
    """
    first = acting(plans)[: min(feed.running_at_most, feed.chunk_size)]
    created = [p.action is Action.TRIGGERED for p in first]
    return first[: created.index(False)] if False in created else first


#: Seconds beyond ``[workers] min_heartbeat_interval`` in :func:`min_deferral_seconds`.
DEFERRAL_MARGIN_SECONDS = 1.5


def min_deferral_seconds(min_heartbeat_interval: float) -> float:
    """Seconds a feeding task waits deferred at the least before it resumes.

    Airflow 3.3.2 can fail a task resumed sooner: its worker may report the deferred attempt's end
    up to ``[workers] min_heartbeat_interval`` late (its supervisor misses the task process's exit
    and sleeps until its next heartbeat), and the scheduler then takes that report for the resumed
    attempt. So: the worker's interval, and a margin.

    >>> min_deferral_seconds(5.0), min_deferral_seconds(1.0)
    (6.5, 2.5)
    """
    return max(0.0, min_heartbeat_interval) + DEFERRAL_MARGIN_SECONDS


#: Runs a deferred feeding task starts per wake-up, in multiples of the target's own
#: ``max_active_runs`` (:func:`feeding`).
RESERVE_BURST = 3

#: Dates per chunk by default: a segment's (at most Airflow's default ``max_map_length``), so a
#: controller run has one ``trigger`` task instance unless a chunk size or failure budget is set.
WHOLE_SEGMENT = MAX_MAP_LENGTH


@dataclass(frozen=True)
class Feeding:
    """How the ``trigger`` tasks keep a backfill's window full.

    ``window``: most runs of the backfill queued or running at once. ``deferred``: whether a
    feeding task waits for room deferred in the triggerer (holding no executor slot; every
    wake-up costs a task start) or in its worker (one executor slot held, reacts within half a
    second). ``resume_at``: a deferred feeding task wakes once at most this many runs are open.
    ``chunk_size``: dates per ``trigger`` task instance. ``running``: the target's own
    ``max_active_runs`` when ``deferred`` (0 in records kept before it was: then the window
    less ``resume_at``, as it was chosen then).
    """

    window: int
    deferred: bool
    resume_at: int
    chunk_size: int
    running: int = 0

    @property
    def running_at_most(self) -> int:
        """Most runs of the backfill running at once: the target's own ``max_active_runs`` when
        the window also holds queued runs (``deferred``), else the whole window.

        >>> feeding(16, 4).running_at_most, feeding(10, 16).running_at_most
        (4, 10)
        >>> Feeding(window=48, deferred=True, resume_at=32, chunk_size=48).running_at_most
        16
        """
        if not self.deferred:
            return self.window
        return self.running or self.window - self.resume_at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def feeding(
    max_active_runs: int,
    target_max_active_runs: int | None,
    *,
    chunk_size: int | None = None,
    failure_budget: bool = False,
) -> Feeding:
    """Choose how to feed the window, from the request's and the target's own ``max_active_runs``.

    When the target's own limit ``M`` is at most the request's, Airflow's scheduler itself keeps
    the backfill to ``M`` running runs and holds the others queued, in logical-date order. The
    window then also holds a reserve of up to ``4M`` queued runs behind the running ones
    (``max(request, 5M)`` open), so runs keep starting while the feeding task waits deferred and
    its executor slot serves the target. It wakes once ``3M`` of the reserve have started (and
    :func:`min_deferral_seconds` at the least) and refills it in one burst: the ``M`` queued runs
    left cover the few seconds a wake-up takes, and a wake-up (a task start, its calls to the
    api-server, a scheduler's hand-over) buys ``3M`` dates.

    Otherwise only the window keeps the backfill to the request's ``max_active_runs``, and nothing
    holds runs back: the feeding task waits in its worker and starts a run within half a second of
    room (one executor slot held while it feeds).

    Either way one chunk holds a whole segment by default (:data:`WHOLE_SEGMENT`): the chunks of a
    run go one at a time, and every chunk waiting its turn is a task instance the scheduler reads
    first (priority 1000) and refuses (``max_active_tis_per_dagrun``) on every loop, so that the
    target's tasks get fewer of the free executor slots. ``chunk_size`` asked for is kept; with a
    failure budget chunks hold ``max_active_runs`` dates, as the budget is counted chunk by chunk.

    >>> feeding(16, 16)
    Feeding(window=80, deferred=True, resume_at=32, chunk_size=1024, running=16)
    >>> feeding(10, 16)
    Feeding(window=10, deferred=False, resume_at=9, chunk_size=1024, running=0)
    >>> feeding(16, 4, chunk_size=2)
    Feeding(window=20, deferred=True, resume_at=8, chunk_size=2, running=4)
    >>> feeding(16, 4, failure_budget=True).chunk_size
    16
    """
    chunk = chunk_size or (max_active_runs if failure_budget else WHOLE_SEGMENT)
    cap = target_max_active_runs
    if cap is None or cap < 1 or cap > max_active_runs:
        window = max_active_runs
        return Feeding(window, deferred=False, resume_at=window - 1, chunk_size=chunk)
    window = max(max_active_runs, (2 + RESERVE_BURST) * cap)
    resume_at = window - RESERVE_BURST * cap
    return Feeding(window, True, resume_at, chunk, running=cap)


@dataclass(frozen=True)
class Execution:
    """How one controller run carries out its plan: the ``plan`` task's XCom ``execution``.

    ``total``: the run's acting dates; ``failed_before``: dates failed in earlier segments (they
    count against ``max_failed_dates``); ``deadline``: epoch seconds after which nothing waits.
    """

    target_dag_id: str
    feeding: Feeding
    max_failed_dates: int | None = None
    failed_before: int = 0
    deadline: float | None = None
    total: int = 0

    @property
    def chunk_size(self) -> int:
        return self.feeding.chunk_size

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "feeding": self.feeding.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Execution:
        return cls(
            target_dag_id=str(data["target_dag_id"]),
            feeding=Feeding(**data["feeding"]),
            max_failed_dates=data.get("max_failed_dates"),
            failed_before=int(data.get("failed_before") or 0),
            deadline=data.get("deadline"),
            total=int(data.get("total") or 0),
        )

    def past_deadline(self, now: float) -> bool:
        return self.deadline is not None and now > self.deadline


#: Seconds before the expected end of its runs from which the ``report`` task watches them from
#: its worker (one executor slot) instead of deferred: the last run's end is then seen within a
#: look and the result written at once, without a hand-over through the triggerer and a new task
#: process. A report that has watched twice this long and still sees runs open defers again.
HOLD_SECONDS = 20.0


def seconds_left(open_runs: int, finished: int, elapsed: float) -> float | None:
    """How long ``open_runs`` more runs take at the pace of ``finished`` runs in ``elapsed``
    seconds; None before any has finished.

    >>> seconds_left(16, 44, 15.0)
    5.45...
    >>> seconds_left(16, 0, 15.0) is None
    True
    """
    if finished <= 0 or elapsed <= 0:
        return None
    return open_runs * elapsed / finished


def near_end(open_runs: int, finished: int, elapsed: float, within: float = HOLD_SECONDS) -> bool:
    """Whether runs open now are expected to end within ``within`` seconds at the pace so far.

    >>> near_end(16, 44, 15.0), near_end(16, 4, 3600.0), near_end(0, 0, 0.0)
    (True, False, True)
    """
    if open_runs <= 0:
        return True
    left = seconds_left(open_runs, finished, elapsed)
    return left is not None and left <= within


def chunk_size_of(execution: Any) -> int:
    """The chunk size stored in an ``execution`` XCom (1 when absent or unreadable)."""
    try:
        return int(execution["feeding"]["chunk_size"])
    except (KeyError, TypeError, ValueError):
        return 1
