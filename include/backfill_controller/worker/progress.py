"""Watching a backfill's runs from inside Airflow, through the Task SDK (no database, no REST).

:func:`segment_facts` gathers what :mod:`backfill_controller.domain.state` needs to say where each date of
a controller run is: the state of each ``trigger`` task instance, and the target runs' states,
beside what each chunk recorded (:class:`backfill_controller.domain.state.ChunkRecord`, kept in
the backfill's record: :func:`backfill_controller.worker.work.kept_chunks`).

Run states are read in batches (``GetDRCount`` over up to :data:`BATCH` run ids at a time): a
batch whose runs have all succeeded costs one call, so reading 1,000 dates costs about 25 calls,
not 1,000. Only a batch with another state is read run by run.

:class:`BackfillProgressTrigger` waits, in the triggerer, until *every* watched run has finished
(unlike ``DagStateTrigger``, which returns after the first one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from backfill_controller.contract import Task
from backfill_controller.domain.airflow_states import (
    OPEN_RUN,
    TASK_FINISHED,
    TASK_RUNNING,
    RunState,
    TaskState,
)
from backfill_controller.domain.plan import Execution, near_end
from backfill_controller.domain.state import ChunkRecord, SegmentFacts, adopted_run_ids

#: Run ids per ``GetDRCount`` call (a GET: the ids travel in the query string).
BATCH = 40
#: Seconds between looks once only the last batch of runs is left (two cheap calls a look).
TAIL_POLL = 0.5


def batches(items: Sequence[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def chunk_states(controller_dag_id: str, controller_run_id: str) -> dict[int, str | None]:
    """``{map_index: state}`` of a controller run's ``trigger`` task instances."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    from backfill_controller.airflow_internals import mapped_states

    states = RTI.get_task_states(
        dag_id=controller_dag_id, task_ids=[Task.TRIGGER], run_ids=[controller_run_id]
    ).get(controller_run_id, {})
    return mapped_states(states)


def _run_state(target_dag_id: str, run_id: str) -> str | None:
    from airflow.sdk.exceptions import AirflowRuntimeError
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    try:
        state = RTI.get_dagrun_state(dag_id=target_dag_id, run_id=run_id)
    except AirflowRuntimeError as error:
        if (error.error.detail or {}).get("status_code") == 404:
            return None  # no such run
        raise
    return str(getattr(state, "value", state))


def run_states(target_dag_id: str, run_ids: Sequence[str]) -> dict[str, str | None]:
    """``{run_id: state}`` of those of ``run_ids`` that exist."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    found: dict[str, str | None] = {}
    for batch in batches(list(dict.fromkeys(run_ids))):
        succeeded = RTI.get_dr_count(dag_id=target_dag_id, run_ids=batch, states=[RunState.SUCCESS.value])
        if succeeded == len(batch):
            found.update(dict.fromkeys(batch, RunState.SUCCESS.value))
            continue
        for run_id in batch:
            state = _run_state(target_dag_id, run_id)
            if state is not None:
                found[run_id] = state
    return found


def segment_facts(
    ti: Any,
    controller_run_id: str,
    execution: Execution,
    plans: Sequence[Mapping[str, Any]],
    run_ids: Sequence[str],
    records: Mapping[int, ChunkRecord],
    *,
    finished: bool,
) -> SegmentFacts:
    """What :func:`backfill_controller.domain.state.segment_dates` needs about one controller run's dates
    ``plans`` (acting ones: ``run_ids``), given what its chunks recorded (``records``)."""
    return SegmentFacts(
        plans=plans,
        run_ids=run_ids,
        chunk_size=execution.chunk_size,
        chunk_states=chunk_states(ti.dag_id, controller_run_id),
        records=records,
        run_states=run_states(execution.target_dag_id, [*run_ids, *adopted_run_ids(records)]),
        finished=finished,
    )


class Window:
    """The runs of a backfill that may still be open, counted in batches.

    Starts with every earlier date of the controller run; batches found with nothing open are
    dropped, so after the first look only the recent dates are asked about.
    """

    def __init__(self, target_dag_id: str, run_ids: Sequence[str]):
        self.target_dag_id = target_dag_id
        self.candidates = list(run_ids)

    def count(self) -> int:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

        still: list[str] = []
        total = 0
        for batch in batches(self.candidates):
            found = RTI.get_dr_count(dag_id=self.target_dag_id, run_ids=batch, states=sorted(OPEN_RUN))
            if found:
                still += batch
                total += found
        self.candidates = still
        return total

    def add(self, run_id: str) -> None:
        self.candidates.append(run_id)


def why_stuck(target_dag_id: str) -> str:
    """A likely reason runs of the target do not finish, for timeout messages."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    try:
        if RTI.get_dag(target_dag_id).is_paused:
            return f"the target DAG {target_dag_id} is paused: unpause it and the runs will proceed"
    except Exception:  # the reason is a hint only; never hide the timeout behind it
        pass
    return "its runs are still queued or running (see the target's runs in the UI)"


class BackfillProgressTrigger(BaseTrigger):
    """Fires once none of the watched runs is queued or running (a run that does not exist is not).

    With ``end_task`` it then ends the waiting task itself (``TaskSuccessEvent``: no worker
    process to resume it); otherwise it resumes the task with ``{"timed_out": false}``. Past
    ``deadline`` (epoch seconds) it resumes the task with ``"timed_out": true`` and the runs that
    may still be open, so nothing waits forever on a run that never finishes.

    With ``hand_over`` (``started_at``: epoch seconds the pace is counted from; ``finished_before``:
    runs finished by then, beside the watched ones) it resumes the task earlier, with
    ``"hand_over": true`` and the runs still open, once those are expected to end within
    :data:`backfill_controller.domain.plan.HOLD_SECONDS` at the pace so far
    (:func:`backfill_controller.domain.plan.near_end`): the task watches the last of them itself.
    A task it resumes is resumed no sooner than ``not_before`` (epoch seconds; see
    :func:`backfill_controller.domain.plan.min_deferral_seconds`).
    """

    def __init__(
        self,
        target_dag_id: str,
        run_ids: list[str],
        poll_interval: float = 5.0,
        deadline: float | None = None,
        end_task: bool = False,
        hand_over: dict[str, float] | None = None,
        not_before: float = 0.0,
    ):
        super().__init__()
        self.target_dag_id = target_dag_id
        self.run_ids = list(run_ids)
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.end_task = end_task
        self.hand_over = hand_over
        self.not_before = not_before

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "target_dag_id": self.target_dag_id,
                "run_ids": self.run_ids,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "end_task": self.end_task,
                "hand_over": self.hand_over,
                "not_before": self.not_before,
            },
        )

    def _near_end(self, still: int, total: int) -> bool:
        if not self.hand_over:
            return False
        finished = int(self.hand_over.get("finished_before", 0)) + total - still
        return near_end(still, finished, time.time() - float(self.hand_over["started_at"]))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        window = Window(self.target_dag_id, self.run_ids)
        total = len(self.run_ids)
        await asyncio.sleep(max(0.0, self.not_before - time.time()))
        while True:
            still = await sync_to_async(window.count)()
            if not still:
                self.log.info("all %d runs of %s finished", total, self.target_dag_id)
                yield TaskSuccessEvent() if self.end_task else TriggerEvent({"timed_out": False})
                return
            if self.deadline is not None and time.time() > self.deadline:
                yield TriggerEvent({"timed_out": True, "pending": sorted(window.candidates)})
                return
            if self._near_end(still, total):
                self.log.info("%d runs of %s left, expected to end soon: handing over", still, total)
                yield TriggerEvent({"timed_out": False, "hand_over": True, "candidates": window.candidates})
                return
            self.log.info("%d of %d runs of %s still open", still, total, self.target_dag_id)
            # The last few runs cost one cheap call a look: look twice a second, end without delay.
            await asyncio.sleep(
                self.poll_interval if len(window.candidates) > BATCH else min(TAIL_POLL, self.poll_interval)
            )


def report_state(controller_dag_id: str, run_id: str) -> str | None:
    """The state of controller run ``run_id``'s ``report`` task instance (None: not started);
    ``removed`` when the run is no longer open without its report having run (ended by a user, or
    deleted), so nothing waits forever for a report that will never run."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    states = RTI.get_task_states(dag_id=controller_dag_id, task_ids=[Task.REPORT], run_ids=[run_id])
    found = states.get(run_id, {}).get(Task.REPORT)
    state = None if found is None else str(getattr(found, "value", found))
    if state in TASK_FINISHED or state == TASK_RUNNING:
        return state
    if not RTI.get_dr_count(dag_id=controller_dag_id, run_ids=[run_id], states=sorted(OPEN_RUN)):
        return TaskState.REMOVED.value
    return state


class SegmentEndTrigger(BaseTrigger):
    """Fires once the ``report`` task of controller run ``run_id`` (a continuation) has ended, or,
    with ``hand_over``, once it runs on a worker: the runs it waits for are near their end, and
    the head's report watches the rest from its own worker. The event: ``{"hand_over": bool}``."""

    def __init__(
        self,
        controller_dag_id: str,
        run_id: str,
        poll_interval: float = 5.0,
        hand_over: bool = False,
        not_before: float = 0.0,
    ):
        super().__init__()
        self.controller_dag_id = controller_dag_id
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.hand_over = hand_over
        self.not_before = not_before

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "controller_dag_id": self.controller_dag_id,
                "run_id": self.run_id,
                "poll_interval": self.poll_interval,
                "hand_over": self.hand_over,
                "not_before": self.not_before,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        await asyncio.sleep(max(0.0, self.not_before - time.time()))
        while True:
            state = await sync_to_async(report_state)(self.controller_dag_id, self.run_id)
            if state in TASK_FINISHED or (self.hand_over and state == TASK_RUNNING):
                yield TriggerEvent({"timed_out": False, "hand_over": state not in TASK_FINISHED})
                return
            await asyncio.sleep(min(TAIL_POLL, self.poll_interval))


class WindowTrigger(BaseTrigger):
    """Fires once at most ``open_at_most`` of the given runs are queued or running, and not before
    ``not_before`` (epoch seconds).

    A ``trigger`` task instance waits here, in the triggerer, while the backfill's window is full,
    instead of holding an executor slot. The event carries the run ids that may still be open
    (the next count starts from them) or, past ``deadline``, ``"timed_out": true``. With
    ``end_task`` (a chunk that has started all its dates, handing over to the next chunk once a
    burst fits) it ends the task from the triggerer instead, in either case: no worker process.
    """

    def __init__(
        self,
        target_dag_id: str,
        run_ids: list[str],
        open_at_most: int,
        not_before: float = 0.0,
        poll_interval: float = 0.5,
        deadline: float | None = None,
        end_task: bool = False,
    ):
        super().__init__()
        self.target_dag_id = target_dag_id
        self.run_ids = list(run_ids)
        self.open_at_most = open_at_most
        self.not_before = not_before
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.end_task = end_task

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "target_dag_id": self.target_dag_id,
                "run_ids": self.run_ids,
                "open_at_most": self.open_at_most,
                "not_before": self.not_before,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "end_task": self.end_task,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        window = Window(self.target_dag_id, self.run_ids)
        await asyncio.sleep(max(0.0, self.not_before - time.time()))
        while True:
            room = await sync_to_async(window.count)() <= self.open_at_most
            timed_out = self.deadline is not None and time.time() > self.deadline
            if self.end_task and (room or timed_out):
                yield TaskSuccessEvent()
                return
            if room:
                yield TriggerEvent({"timed_out": False, "candidates": window.candidates})
                return
            if timed_out:
                yield TriggerEvent({"timed_out": True, "pending": window.candidates})
                return
            await asyncio.sleep(self.poll_interval)
