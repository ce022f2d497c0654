"""Watching a backfill's runs from inside Airflow, through the Task SDK (no database, no REST).

A date's progress combines two facts: the state of the controller's mapped ``trigger`` task
instance of its chunk (success: its runs were created or cleared; skipped: cancelled by the
failure budget; failed: the trigger was refused), and the state of the target run. Reading the
trigger task's state first matters for cleared runs: before they are cleared they already look
finished.

Run states are read in batches (``GetDRCount`` over up to :data:`BATCH` run ids at a time): a
batch whose runs have all succeeded costs one call, so watching 1,000 dates costs about 20 calls
per poll, not 1,000. Only a batch with a failure is read run by run, to name the failed dates.

:class:`BackfillProgressTrigger` waits, in the triggerer, until *every* watched run has finished
(unlike ``DagStateTrigger``, which returns after the first one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from include.backfill.plan import chunk_of
from include.backfill.report import PENDING, outcome

TRIGGER_TASK_ID = "trigger"
#: Run ids per ``GetDRCount`` call (a GET: the ids travel in the query string).
BATCH = 40
FINISHED = ("success", "failed")
#: Seconds between looks once only the last batch of runs is left (two cheap calls a look).
TAIL_POLL = 0.5
OPEN = ("queued", "running")


def batches(items: Sequence[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


@dataclass(frozen=True)
class Watch:
    """Where to look: the controller run, and the run_ids of its acting dates in plan order.

    ``positions`` are the dates' indexes among the acting dates (default: all of them), which
    with ``chunk_size`` name each date's ``trigger`` task instance.
    """

    controller_dag_id: str
    controller_run_id: str
    target_dag_id: str
    run_ids: Sequence[str]
    chunk_size: int
    positions: Sequence[int] | None = None

    def to_kwargs(self) -> dict[str, Any]:
        return {
            "controller_dag_id": self.controller_dag_id,
            "controller_run_id": self.controller_run_id,
            "target_dag_id": self.target_dag_id,
            "run_ids": list(self.run_ids),
            "chunk_size": self.chunk_size,
            "positions": list(self.positions) if self.positions is not None else None,
        }

    def entries(self) -> list[tuple[int, str]]:
        positions = self.positions if self.positions is not None else range(len(self.run_ids))
        return list(zip(positions, self.run_ids, strict=True))

    def only(self, run_ids: set[str]) -> Watch:
        kept = [(p, r) for p, r in self.entries() if r in run_ids]
        return Watch(
            self.controller_dag_id,
            self.controller_run_id,
            self.target_dag_id,
            [r for _, r in kept],
            self.chunk_size,
            [p for p, _ in kept],
        )


def _chunk_states(watch: Watch) -> dict[int, str | None]:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    states = RTI.get_task_states(
        dag_id=watch.controller_dag_id, task_ids=[TRIGGER_TASK_ID], run_ids=[watch.controller_run_id]
    ).get(watch.controller_run_id, {})
    found: dict[int, str | None] = {}
    for key, state in states.items():
        index = key.rsplit("_", 1)[-1]
        if index.isdigit():
            found[int(index)] = getattr(state, "value", state)
    return found


def _acted(watch: Watch) -> tuple[dict[str, str], list[str]]:
    """Outcomes of the dates whose trigger did not succeed, and the run_ids of those whose did."""
    chunk_states = _chunk_states(watch)
    result: dict[str, str] = {}
    acted: list[str] = []
    for position, run_id in watch.entries():
        ti_state = chunk_states.get(chunk_of(position, watch.chunk_size))
        if ti_state == "success":
            acted.append(run_id)
        else:
            result[run_id] = outcome(ti_state, None)
    return result, acted


def observe(watch: Watch) -> dict[str, str]:
    """``{run_id: outcome}`` for the watched dates; see :func:`include.backfill.report.outcome`."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    if not watch.run_ids:
        return {}
    result, acted = _acted(watch)
    for batch in batches(acted):
        if RTI.get_dr_count(dag_id=watch.target_dag_id, run_ids=batch, states=["success"]) == len(batch):
            result.update(dict.fromkeys(batch, "success"))
            continue
        for run_id in batch:
            state = RTI.get_dagrun_state(dag_id=watch.target_dag_id, run_id=run_id)
            result[run_id] = outcome("success", str(getattr(state, "value", state)))
    return result


def unfinished(watch: Watch) -> set[str]:
    """The watched dates still pending: trigger not done yet, or run queued or running (cheap)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    result, acted = _acted(watch)
    pending = {r for r, o in result.items() if o == PENDING}
    for batch in batches(acted):
        if RTI.get_dr_count(dag_id=watch.target_dag_id, run_ids=batch, states=list(FINISHED)) < len(batch):
            pending.update(batch)
    return pending


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
            found = RTI.get_dr_count(dag_id=self.target_dag_id, run_ids=batch, states=list(OPEN))
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
    """Fires once every watched date has finished.

    With ``end_task`` it then ends the waiting task itself (``TaskSuccessEvent``: no worker
    process to resume it); otherwise it resumes the task with ``{"timed_out": false}``. Past
    ``deadline`` (epoch seconds) it resumes the task with ``"timed_out": true`` and the dates still
    pending, so nothing waits forever on a run that never finishes.
    """

    def __init__(
        self,
        controller_dag_id: str,
        controller_run_id: str,
        target_dag_id: str,
        run_ids: list[str],
        chunk_size: int,
        positions: list[int] | None = None,
        poll_interval: float = 5.0,
        deadline: float | None = None,
        end_task: bool = False,
    ):
        super().__init__()
        self.watch = Watch(
            controller_dag_id, controller_run_id, target_dag_id, run_ids, chunk_size, positions
        )
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.end_task = end_task

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.watch.to_kwargs(),
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "end_task": self.end_task,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        watch = self.watch
        total = len(watch.run_ids)
        while True:
            todo = await sync_to_async(unfinished)(watch)
            if not todo:
                self.log.info("all %d runs of %s finished", total, watch.target_dag_id)
                yield TaskSuccessEvent() if self.end_task else TriggerEvent({"timed_out": False})
                return
            if self.deadline is not None and time.time() > self.deadline:
                yield TriggerEvent({"timed_out": True, "pending": sorted(todo)})
                return
            self.log.info("%d of %d runs of %s finished", total - len(todo), total, watch.target_dag_id)
            watch = watch.only(todo)
            # The last few runs cost two cheap calls a look: look twice a second, end without delay.
            await asyncio.sleep(
                self.poll_interval if len(todo) > BATCH else min(TAIL_POLL, self.poll_interval)
            )


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
