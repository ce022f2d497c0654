"""A backfill's state: each date's action and outcome, its counts, and its phase.

Computed here and nowhere else. The report (a task, through the Task SDK), the Backfills page (the
api-server, from the database) and the CLI (the REST API) each gather the same facts their own
way (:class:`SegmentFacts`: the plan, the state of each ``trigger`` task instance, what each
recorded, the target runs' states) and read the result from :func:`segment_dates`,
:func:`count` and :func:`phase`.

The truth about a date is what happened to its run, not the state of the task that acted on it:

* a new run counts as started once it exists under the backfill's run_id, whatever became of the
  task that created it, and the backfill waits for it;
* a chunk's ``trigger`` task records (:class:`ChunkRecord`) how many of its dates it has acted
  on, and any date whose run Airflow refused (``trigger_failed``, with Airflow's message) or that
  another run took first (``adopted``: the date's outcome is that run's);
* a date its chunk never reached is ``cancelled``, with the reason;
* a date the plan left alone (action ``skipped``) is where its run is (its state as the reader
  found it, else as planned), or ``skipped`` when it has none. It is no part of what the backfill
  did: only the dates it acted on (:func:`acted_on`) count towards its progress, its failures and
  its success. Whether every date has a successful run is :func:`window_complete`.

Run and task instance states are Airflow's (:mod:`backfill_controller.domain.airflow_states`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from itertools import product
from typing import Any

from backfill_controller.domain.airflow_states import (
    TASK_FAILED,
    RunState,
    TaskState,
)
from backfill_controller.domain.plan import Action, chunk_of


class DateState(StrEnum):
    """Where one date of a backfill is."""

    PLANNED = "planned"
    """A dry run's date: nothing was done."""
    SKIPPED = "skipped"
    """The plan left the date alone and it has no run (the reason says why); a date left alone
    that has a run is where its run is."""
    PENDING = "pending"
    """Not started yet."""
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    TRIGGER_FAILED = "trigger_failed"
    """Airflow refused to create or clear the date's run (its message is the reason)."""
    CANCELLED = "cancelled"
    """Never started: the failure budget ran out, the backfill was cancelled, or its chunk failed."""


#: Dates that count against ``max_failed_dates`` and make the backfill fail (of those it acted on).
FAILED_DATES = frozenset({DateState.FAILED, DateState.TRIGGER_FAILED})
IN_FLIGHT_DATES = frozenset({DateState.QUEUED, DateState.RUNNING})
UNFINISHED_DATES = frozenset({DateState.PENDING, *IN_FLIGHT_DATES})
FINISHED_DATES = frozenset({DateState.SUCCESS, *FAILED_DATES, DateState.CANCELLED})


class Phase(StrEnum):
    """Where a backfill as a whole is."""

    QUEUED = "queued"
    PLANNING = "planning"
    PLANNED = "planned"
    """A dry run, planned: nothing will be done."""
    RUNNING = "running"
    PAUSED = "paused"
    """Running, but no new date starts until it is resumed."""
    CANCELLING = "cancelling"
    """Cancelled; runs already running are finishing."""
    CANCELLED = "cancelled"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINAL_PHASES = frozenset({Phase.PLANNED, Phase.CANCELLED, Phase.SUCCEEDED, Phase.FAILED})


class EventKind(StrEnum):
    ADOPTED = "adopted"
    """Another run had the date's logical date already: the date's outcome is that run's."""
    REFUSED = "refused"
    """Airflow refused the date's run: ``trigger_failed``."""


@dataclass(frozen=True)
class Event:
    """Something a ``trigger`` task met with one date, beyond creating or clearing its run."""

    kind: EventKind
    message: str
    run_id: str | None = None
    """The run that carries the date (``adopted``)."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "message": self.message, "run_id": self.run_id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        return cls(EventKind(data["kind"]), str(data.get("message") or ""), data.get("run_id"))


@dataclass(frozen=True)
class ChunkRecord:
    """What one ``trigger`` task instance has done, kept in the backfill's record before it stops,
    defers or ends (``POST .../controller_runs/{run_id}/chunks/{chunk}``).

    ``chunk``: its map index. ``acted``: how many of its dates, from the first, it has acted on
    (created, cleared, adopted or refused). ``stopped``: why it stopped before its last date, if
    it did.
    """

    chunk: int
    acted: int = 0
    events: Mapping[str, Event] = field(default_factory=dict)
    stopped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk,
            "acted": self.acted,
            "events": {run_id: e.to_dict() for run_id, e in self.events.items()},
            "stopped": self.stopped,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ChunkRecord | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("chunk"), int):
            return None
        events = {str(k): Event.from_dict(v) for k, v in (data.get("events") or {}).items()}
        return cls(data["chunk"], int(data.get("acted") or 0), events, data.get("stopped"))


def records_by_chunk(values: Any) -> dict[int, ChunkRecord]:
    """``{chunk: record}`` from the chunks' records as the backfill's record keeps them (a list, or
    one; anything that is not a record is left out)."""
    items = values if isinstance(values, list) else [values]
    found = {}
    for item in items:
        record = ChunkRecord.from_dict(item)
        if record is not None:
            found[record.chunk] = record
    return found


def adopted_run_ids(records: Mapping[int, ChunkRecord]) -> list[str]:
    """The runs of other requesters that carry dates of the backfill."""
    return [e.run_id for r in records.values() for e in r.events.values() if e.run_id]


@dataclass(frozen=True)
class SegmentFacts:
    """What a reader gathers about one controller run (the head run, or one segment's run).

    ``plans``: the plan's dates (``DatePlan.to_dict()``), ``run_ids``: the acting dates' run_ids
    in chunk order, ``chunk_states``/``records``: per ``trigger`` map index, its task instance's
    state and :class:`ChunkRecord`, ``run_states``: the target runs' states by run_id (the
    planned run_ids and the adopted ones; absent: no such run; a date left alone whose run was
    not read is as its plan found it), ``finished``: whether the controller run has ended.
    """

    plans: Sequence[Mapping[str, Any]]
    run_ids: Sequence[str]
    chunk_size: int
    chunk_states: Mapping[int, str | None]
    records: Mapping[int, ChunkRecord]
    run_states: Mapping[str, str | None]
    finished: bool
    dry_run: bool = False


@dataclass(frozen=True)
class DateOutcome:
    """One date: what the backfill did about it and where it is."""

    logical_date: str
    run_id: str
    """The run that carries the date: the planned one, or the one adopted."""
    action: Action
    state: DateState
    why: str
    run_state: str | None
    """The state of the run that carries the date (None: no such run)."""

    @property
    def left_alone(self) -> bool:
        """Whether the plan left the date alone (see :func:`left_alone`)."""
        return left_alone(self.action)

    def to_dict(self) -> dict[str, Any]:
        return {
            "logical_date": self.logical_date,
            "run_id": self.run_id,
            "action": self.action.value,
            "state": self.state.value,
            "why": self.why,
            "run_state": self.run_state,
        }


def left_alone(action: Action | str) -> bool:
    """Whether a date with this ``action`` is one the plan left alone: its state is its run's, and
    it is no part of what the backfill did.

    >>> left_alone("skipped"), left_alone(Action.CLEARED), left_alone("cancelled")
    (True, False, False)
    """
    return Action(action) is Action.SKIPPED


def acted_on(dates: Sequence[DateOutcome]) -> list[DateOutcome]:
    """The dates a backfill answers for: all but those its plan left alone (a dry run's dates to
    trigger or clear included, ``planned``)."""
    return [d for d in dates if not d.left_alone]


def window_complete(dates: Sequence[DateOutcome]) -> bool:
    """Whether every date has a successful run, as far as these outcomes know (``run_state``: the
    run that carries the date, be it one the backfill created or cleared, one another run took the
    date with, or one the plan left alone; a date the backfill was to clear but never did still
    has its earlier run; a dry run's dates have the runs the plan found).

    >>> ok = DateOutcome("2024-01-01", "r1", Action.SKIPPED, DateState.SUCCESS, "", "success")
    >>> bad = DateOutcome("2024-01-02", "r2", Action.SKIPPED, DateState.FAILED, "", "failed")
    >>> window_complete([ok]), window_complete([ok, bad])
    (True, False)
    """
    return all(d.run_state == RunState.SUCCESS for d in dates)


def run_date_state(run_state: str | None) -> DateState:
    """A started date's state from its run's (no run yet: pending).

    >>> run_date_state("running"), run_date_state(None), run_date_state("success")
    (<DateState.RUNNING: 'running'>, <DateState.PENDING: 'pending'>, <DateState.SUCCESS: 'success'>)
    """
    if run_state is None:
        return DateState.PENDING
    try:
        return DateState(run_state)
    except ValueError:  # a state Airflow may add: not finished as far as a backfill knows
        return DateState.PENDING


def _not_started(
    chunk_state: str | None, record: ChunkRecord | None, finished: bool
) -> tuple[DateState, str]:
    if record is not None and record.stopped:
        return DateState.CANCELLED, f"not started: {record.stopped}"
    if chunk_state == TaskState.SKIPPED:
        return DateState.CANCELLED, "not started: the backfill was cancelled"
    if chunk_state in TASK_FAILED:
        return DateState.CANCELLED, "not started: its trigger task failed (see its log)"
    if finished:
        return DateState.CANCELLED, "not started: the backfill ended first"
    return DateState.PENDING, ""


def _acting_date(plan: Mapping[str, Any], position: int, facts: SegmentFacts) -> DateOutcome:
    chunk = chunk_of(position, facts.chunk_size)
    chunk_state = facts.chunk_states.get(chunk)
    record = facts.records.get(chunk)
    run_id, action = str(plan["run_id"]), Action(plan["action"])
    date = str(plan["logical_date"])
    event = record.events.get(run_id) if record is not None else None
    if event is not None and event.kind == EventKind.REFUSED:
        return DateOutcome(
            date, run_id, action, DateState.TRIGGER_FAILED, event.message, facts.run_states.get(run_id)
        )
    if event is not None and event.run_id:
        run_state = facts.run_states.get(event.run_id)
        return DateOutcome(
            date, event.run_id, Action.ADOPTED, run_date_state(run_state), event.message, run_state
        )
    run_state = facts.run_states.get(run_id)
    started = (
        chunk_state == TaskState.SUCCESS
        or (record is not None and position - chunk * facts.chunk_size < record.acted)
        or (action == Action.TRIGGERED and run_state is not None)
    )
    if started:
        return DateOutcome(
            date, run_id, action, run_date_state(run_state), str(plan.get("why") or ""), run_state
        )
    state, why = _not_started(chunk_state, record, facts.finished)
    shown = Action.CANCELLED if state == DateState.CANCELLED else action
    return DateOutcome(date, run_id, shown, state, why or str(plan.get("why") or ""), run_state)


def _left_alone_date(plan: Mapping[str, Any], facts: SegmentFacts) -> DateOutcome:
    """A date the plan left alone: where its run is (as the reader found it, else as it was when
    planned), or ``skipped`` when it has none."""
    run_id = str(plan["run_id"])
    run_state = facts.run_states[run_id] if run_id in facts.run_states else plan.get("existing_state")
    state = DateState.SKIPPED if run_state is None else run_date_state(run_state)
    why = str(plan.get("why") or "")
    return DateOutcome(str(plan["logical_date"]), run_id, Action(plan["action"]), state, why, run_state)


def segment_dates(facts: SegmentFacts) -> list[DateOutcome]:
    """Every date of one controller run, in plan order."""
    positions = {run_id: i for i, run_id in enumerate(facts.run_ids)}
    dates = []
    for plan in facts.plans:
        action = Action(plan["action"])
        run_id, date = str(plan["run_id"]), str(plan["logical_date"])
        if left_alone(action):
            dates.append(_left_alone_date(plan, facts))
        elif facts.dry_run:
            why = str(plan.get("why") or "")
            dates.append(
                DateOutcome(date, run_id, action, DateState.PLANNED, why, plan.get("existing_state"))
            )
        elif run_id in positions:
            dates.append(_acting_date(plan, positions[run_id], facts))
        else:  # a later segment whose run has not planned yet
            state, why = _not_started(None, None, facts.finished)
            shown = Action.CANCELLED if state == DateState.CANCELLED else action
            dates.append(DateOutcome(date, run_id, shown, state, why, None))
    return dates


def failed_dates(dates: Sequence[DateOutcome]) -> int:
    """Dates counted against ``max_failed_dates``: the dates the backfill acted on that failed (a
    date left alone whose run failed is not the backfill's failure).

    >>> alone = DateOutcome("2024-01-01", "r", Action.SKIPPED, DateState.FAILED, "", "failed")
    >>> cleared = DateOutcome("2024-01-02", "s", Action.CLEARED, DateState.FAILED, "", "failed")
    >>> failed_dates([alone]), failed_dates([alone, cleared])
    (0, 1)
    """
    return sum(1 for d in acted_on(dates) if d.state in FAILED_DATES)


def open_run_ids(dates: Sequence[DateOutcome]) -> list[str]:
    """The runs a backfill still waits for: those of the dates it acted on that are queued or
    running (never the run of a date it left alone)."""
    return [d.run_id for d in acted_on(dates) if d.state in IN_FLIGHT_DATES]


@dataclass(frozen=True)
class Counts:
    """A backfill's dates counted by :func:`count`: each state counts the dates it acted on, and
    ``skipped`` those the plan left alone, whatever their runs' states."""

    dates: int = 0
    acting: int = 0
    """Dates to trigger, clear or adopt (not skipped by the plan)."""
    pending: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    """``failed`` and ``trigger_failed``."""
    cancelled: int = 0
    skipped: int = 0
    """Dates the plan left alone."""
    planned: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def in_flight(self) -> int:
        """Dates whose run is queued or running."""
        return self.queued + self.running

    def to_dict(self) -> dict[str, int]:
        return {**self.__dict__, "finished": self.finished}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def count(dates: Sequence[DateOutcome]) -> Counts:
    """
    >>> d = DateOutcome("2024-01-01", "r", Action.TRIGGERED, DateState.TRIGGER_FAILED, "no", None)
    >>> count([d]).failed, count([d]).acting
    (1, 1)
    >>> alone = DateOutcome("2024-01-02", "s", Action.SKIPPED, DateState.FAILED, "run exists", "failed")
    >>> count([alone]).failed, count([alone]).skipped
    (0, 1)
    """
    own = acted_on(dates)
    states = Counter(d.state for d in own)
    return Counts(
        dates=len(dates),
        acting=sum(1 for d in own if d.state is not DateState.PLANNED),
        pending=states[DateState.PENDING],
        queued=states[DateState.QUEUED],
        running=states[DateState.RUNNING],
        succeeded=states[DateState.SUCCESS],
        failed=sum(states[s] for s in FAILED_DATES),
        cancelled=states[DateState.CANCELLED],
        skipped=len(dates) - len(own),
        planned=states[DateState.PLANNED],
    )


def phase(
    controller_state: str | None,
    *,
    planned: bool,
    dry_run: bool,
    counts: Counts,
    reported: bool | None = None,
    paused: bool = False,
) -> Phase:
    """A backfill's phase from its controller run's state and its dates.

    ``reported``: whether the ``report`` task ran (None: not known). A controller run that failed
    without its report ran was cancelled (marked failed); while runs it started are still open it
    is cancelling. ``paused``: whether a user paused it (:mod:`backfill_controller.domain.controls`).

    >>> phase("running", planned=True, dry_run=False, counts=Counts(dates=2, running=1))
    <Phase.RUNNING: 'running'>
    >>> phase("failed", planned=True, dry_run=False, counts=Counts(dates=2, running=1), reported=False)
    <Phase.CANCELLING: 'cancelling'>
    >>> phase("success", planned=True, dry_run=True, counts=Counts(dates=2))
    <Phase.PLANNED: 'planned'>
    """
    if controller_state in (None, RunState.QUEUED):
        return Phase.QUEUED
    if controller_state == RunState.RUNNING:
        if not planned:
            return Phase.PLANNING
        if dry_run:
            return Phase.PLANNED
        return Phase.PAUSED if paused else Phase.RUNNING
    if controller_state == RunState.SUCCESS:
        return Phase.PLANNED if dry_run else Phase.SUCCEEDED
    if reported is False and planned and not dry_run:
        return Phase.CANCELLING if counts.in_flight else Phase.CANCELLED
    return Phase.FAILED


#: Counts that make :func:`phase` tell a cancelled backfill from one still cancelling.
_AT_REST, _BUSY = Counts(), Counts(running=1)


def possible_phases(
    controller_state: str | None, *, planned: bool, dry_run: bool, reported: bool | None, paused: bool = False
) -> frozenset[Phase]:
    """The phases :func:`phase` can answer, whatever the dates' counts: one, or both of cancelling
    and cancelled when only whether runs are still open tells them apart.

    >>> sorted(possible_phases("failed", planned=True, dry_run=False, reported=False))
    [<Phase.CANCELLED: 'cancelled'>, <Phase.CANCELLING: 'cancelling'>]
    >>> possible_phases("failed", planned=True, dry_run=False, reported=True)
    frozenset({<Phase.FAILED: 'failed'>})
    """
    return frozenset(
        phase(
            controller_state,
            planned=planned,
            dry_run=dry_run,
            counts=counts,
            reported=reported,
            paused=paused,
        )
        for counts in (_AT_REST, _BUSY)
    )


@cache
def run_states_of(wanted: Phase) -> frozenset[str | None]:
    """The controller run states (Airflow's; None: no state yet) in which :func:`phase` can answer
    ``wanted``: a database filter that keeps every backfill that may be in that phase.

    >>> sorted(run_states_of(Phase.PLANNED))
    ['running', 'success']
    """
    return frozenset(
        None if state is None else str(state)
        for state, planned, dry_run, reported, paused in product(
            (None, *RunState), (False, True), (False, True), (None, False, True), (False, True)
        )
        if wanted
        in possible_phases(state, planned=planned, dry_run=dry_run, reported=reported, paused=paused)
    )
