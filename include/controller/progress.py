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

from include.backfill.plan import chunk_bounds, chunk_fits, chunk_of, chunk_turn
from include.backfill.report import PENDING, outcome

TRIGGER_TASK_ID = "trigger"
#: Run ids per ``GetDRCount`` call (a GET: the ids travel in the query string).
BATCH = 40
FINISHED = ("success", "failed")
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


def chunk_states(controller_dag_id: str, controller_run_id: str) -> dict[int, str | None]:
    """``{map index: state}`` of the controller run's ``trigger`` task instances (one call)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    states = RTI.get_task_states(
        dag_id=controller_dag_id, task_ids=[TRIGGER_TASK_ID], run_ids=[controller_run_id]
    ).get(controller_run_id, {})
    found: dict[int, str | None] = {}
    for key, state in states.items():
        index = key.rsplit("_", 1)[-1]
        if index.isdigit():
            found[int(index)] = getattr(state, "value", state)
    return found


def _chunk_states(watch: Watch) -> dict[int, str | None]:
    return chunk_states(watch.controller_dag_id, watch.controller_run_id)


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
            # The last few runs cost one call a look: look every second, and end without delay.
            await asyncio.sleep(self.poll_interval if len(todo) > BATCH else min(1.0, self.poll_interval))


#: Seconds a look at a controller run's chunk states is shared by the triggers waiting on it.
STATES_TTL = 0.4
_shared_states: dict[tuple[str, str], tuple[float, dict[int, str | None]]] = {}


def shared_chunk_states(controller_dag_id: str, controller_run_id: str) -> dict[int, str | None]:
    """:func:`chunk_states`, shared for :data:`STATES_TTL` seconds by every trigger of the run.

    All the chunks of a controller run wait at once, in one triggerer process; each looks twice a
    second, but the API server is asked once per look, however many chunks wait.
    """
    now = time.monotonic()
    key = (controller_dag_id, controller_run_id)
    hit = _shared_states.get(key)
    if hit is not None and now - hit[0] < STATES_TTL:
        return hit[1]
    states = chunk_states(controller_dag_id, controller_run_id)
    for stale in [k for k, (at, _) in _shared_states.items() if now - at > 60]:
        del _shared_states[stale]
    _shared_states[key] = (now, states)
    return states


_plan_facts_cache: dict[tuple[str, str], tuple[float, dict[str, Any], list[str]]] = {}


def shared_plan_facts(controller_dag_id: str, controller_run_id: str) -> tuple[dict[str, Any], list[str]]:
    """The plan's ``gate`` and ``run_ids`` XComs, read once per controller run by its triggers."""
    from airflow.sdk.execution_time.xcom import XCom

    key = (controller_dag_id, controller_run_id)
    if key not in _plan_facts_cache:

        def pull(name: str) -> Any:
            return XCom.get_one(
                key=name, dag_id=controller_dag_id, task_id="plan", run_id=controller_run_id, map_index=-1
            )

        now = time.monotonic()
        for stale in [k for k, (at, _, _) in _plan_facts_cache.items() if now - at > 24 * 3600]:
            del _plan_facts_cache[stale]
        _plan_facts_cache[key] = (now, pull("gate") or {}, list(pull("run_ids") or []))
    _, gate, run_ids = _plan_facts_cache[key]
    return gate, run_ids


class ChunkTurnTrigger(BaseTrigger):
    """Holds a chunk's ``trigger`` task instance in the triggerer until it may start its dates.

    The task starts deferred (``start_from_trigger``): no task process and no executor slot while
    it waits. It finds its chunk from its own task instance (map index) and the plan's XComs, and
    fires once the window has room for the chunk (:func:`include.backfill.plan.chunk_fits`),
    counting the runs of finished earlier chunks that are queued or running, and every date of
    the earlier chunks not finished yet (the task then starts its dates after theirs, so dates
    start in order). With a failure budget, it fires once every earlier date has finished. Past
    the plan's deadline it fires with ``"timed_out": true``.

    Because each task instance runs only after its wait, never before it, no task is ever resumed
    from a deferral (Airflow 3.3.2 can fail a task resumed within seconds of deferring: the
    scheduler takes the old worker's late exit report for the new attempt).
    """

    def __init__(self, poll_interval: float = 0.5):  # started with no kwargs: see BackfillTriggerOperator
        super().__init__()
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {"poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        ti = self.task_instance
        dag_id, run_id, chunk = ti.dag_id, ti.run_id, ti.map_index
        if chunk == 0:  # nothing before it: the window is empty
            yield TriggerEvent({"timed_out": False, "candidates": [], "pending": []})
            return
        gate, run_ids = await sync_to_async(shared_plan_facts)(dag_id, run_id)
        size, total = gate["chunk_size"], len(run_ids)
        budget = gate.get("max_failed_dates") is not None
        mine = len(chunk_bounds(chunk, size, total))
        window = Window(gate["target_dag_id"], [])
        counted: set[int] = set()
        while True:
            turn = chunk_turn(await sync_to_async(shared_chunk_states)(dag_id, run_id), chunk)
            if not (budget and turn.pending):
                for done in set(turn.done) - counted:
                    counted.add(done)
                    window.candidates += [run_ids[i] for i in chunk_bounds(done, size, total)]
                open_runs = await sync_to_async(window.count)()
                reserved = sum(len(chunk_bounds(j, size, total)) for j in turn.pending)
                if (
                    open_runs == 0
                    if budget
                    else chunk_fits(open_runs, reserved, mine, gate["max_active_runs"])
                ):
                    yield TriggerEvent(
                        {"timed_out": False, "candidates": window.candidates, "pending": list(turn.pending)}
                    )
                    return
            if gate.get("deadline") is not None and time.time() > gate["deadline"]:
                pending = window.candidates or run_ids[: chunk * size]
                yield TriggerEvent({"timed_out": True, "pending": pending})
                return
            await asyncio.sleep(self.poll_interval)
