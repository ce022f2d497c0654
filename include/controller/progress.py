"""Watching a backfill's runs from inside Airflow, through the Task SDK (no database, no REST).

A date's progress combines two facts: whether the controller's mapped ``trigger`` task for it has
finished (success: its run was created or cleared; skipped: cancelled by the failure budget;
failed: the trigger was refused), and the state of the target run. Reading the trigger task's
state first matters for cleared runs: before they are cleared they already look finished.

:class:`BackfillProgressTrigger` reports the state of *every* run it watches (unlike
``DagStateTrigger``, which returns after the first one).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from include.backfill.report import PENDING, outcome

TRIGGER_TASK_ID = "trigger"


@dataclass(frozen=True)
class Watch:
    """Where to look: the controller run, and each target run with its map index in ``trigger``."""

    controller_dag_id: str
    controller_run_id: str
    target_dag_id: str
    entries: Sequence[tuple[int, str]]

    def to_kwargs(self) -> dict[str, Any]:
        return {
            "controller_dag_id": self.controller_dag_id,
            "controller_run_id": self.controller_run_id,
            "target_dag_id": self.target_dag_id,
            "entries": [[i, r] for i, r in self.entries],
        }

    def only(self, run_ids: set[str]) -> Watch:
        return Watch(
            self.controller_dag_id,
            self.controller_run_id,
            self.target_dag_id,
            [(i, r) for i, r in self.entries if r in run_ids],
        )


def observe(watch: Watch) -> dict[str, str]:
    """``{run_id: outcome}`` for the watched dates; see :func:`include.backfill.report.outcome`."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

    if not watch.entries:
        return {}
    states = RTI.get_task_states(
        dag_id=watch.controller_dag_id, task_ids=[TRIGGER_TASK_ID], run_ids=[watch.controller_run_id]
    ).get(watch.controller_run_id, {})
    result: dict[str, str] = {}
    for index, run_id in watch.entries:
        ti_state = states.get(f"{TRIGGER_TASK_ID}_{index}")
        ti_state = getattr(ti_state, "value", ti_state)
        run_state = None
        if ti_state == "success":
            state = RTI.get_dagrun_state(dag_id=watch.target_dag_id, run_id=run_id)
            run_state = str(getattr(state, "value", state))
        result[run_id] = outcome(ti_state, run_state)
    return result


def pending(outcomes: dict[str, str]) -> list[str]:
    return [run_id for run_id, o in outcomes.items() if o == PENDING]


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
    """Fires once every watched date has finished, with ``{"outcomes": {run_id: outcome}}``.

    Past ``deadline`` (epoch seconds) it fires anyway, with ``"timed_out": true`` and the dates
    still pending among the outcomes, so nothing waits forever on a run that never finishes.
    """

    def __init__(
        self,
        controller_dag_id: str,
        controller_run_id: str,
        target_dag_id: str,
        entries: list[list[Any]],
        poll_interval: float = 5.0,
        deadline: float | None = None,
    ):
        super().__init__()
        self.watch = Watch(
            controller_dag_id, controller_run_id, target_dag_id, [(int(i), str(r)) for i, r in entries]
        )
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {**self.watch.to_kwargs(), "poll_interval": self.poll_interval, "deadline": self.deadline},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from asgiref.sync import sync_to_async

        finished: dict[str, str] = {}
        total = len(self.watch.entries)
        while True:
            todo = {r for _, r in self.watch.entries if r not in finished}
            for run_id, result in (await sync_to_async(observe)(self.watch.only(todo))).items():
                if result != PENDING:
                    finished[run_id] = result
            if len(finished) == total:
                yield TriggerEvent({"outcomes": finished, "timed_out": False})
                return
            if self.deadline is not None and time.time() > self.deadline:
                pending_ids = {r: PENDING for _, r in self.watch.entries if r not in finished}
                yield TriggerEvent({"outcomes": {**finished, **pending_ids}, "timed_out": True})
                return
            self.log.info("%d of %d runs of %s finished", len(finished), total, self.watch.target_dag_id)
            await asyncio.sleep(self.poll_interval)
