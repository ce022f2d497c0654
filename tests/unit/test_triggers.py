"""The controller's triggers, driven one event at a time with ``RuntimeTaskInstance`` mocked.

As Airflow tests its own triggers (``providers/standard/tests/unit/standard/triggers``): the Task
SDK calls a trigger makes are patched, ``run()`` is advanced to its next event, and
``serialize()`` must return the classpath and kwargs that rebuild the same trigger.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Callable, Iterable
from unittest import mock

import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from include.controller.progress import BackfillProgressTrigger, WindowTrigger

RTI = "airflow.sdk.execution_time.task_runner.RuntimeTaskInstance"


def open_runs(known: dict[str, str]) -> Callable[..., int]:
    """A ``get_dr_count`` answering from ``{run_id: state}`` (runs not listed do not exist)."""

    def count(dag_id: str, run_ids: Iterable[str] = (), states: Iterable[str] | None = None, **_) -> int:
        return sum(1 for r in run_ids if r in known and (states is None or known[r] in states))

    return count


def first_event(trigger) -> object:
    async def go():
        with mock.patch("asyncio.sleep", new=mock.AsyncMock()):
            return await trigger.run().__anext__()

    return asyncio.run(go())


def rebuilt(trigger):
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**kwargs)


# ------------------------------------------------------------------------------- WindowTrigger

WINDOW = {"r1": "running", "r2": "queued", "r3": "success"}


@pytest.mark.parametrize(
    "open_at_most, end_task, expected",
    [
        # a batch (of up to 40 run ids) with an open run stays a candidate for the next count
        (2, False, TriggerEvent({"timed_out": False, "candidates": ["r1", "r2", "r3"]})),
        (2, True, TaskSuccessEvent()),
    ],
    ids=["room in the window: resume the feeding task", "room, handing over: end the task"],
)
def test_window_trigger_fires_once_the_window_has_room(open_at_most, end_task, expected):
    trigger = WindowTrigger("t", ["r1", "r2", "r3"], open_at_most=open_at_most, end_task=end_task)
    with mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(WINDOW)):
        assert first_event(trigger) == expected


def test_window_trigger_waits_while_the_window_is_full_then_fires():
    answers = iter([2, 2, 1])  # the window holds 2 open runs twice, then 1
    trigger = WindowTrigger("t", ["r1", "r2"], open_at_most=1, poll_interval=0.01)
    with mock.patch(f"{RTI}.get_dr_count", side_effect=lambda **_: next(answers)):
        event = first_event(trigger)
    assert event.payload["timed_out"] is False


@pytest.mark.parametrize("end_task", [False, True], ids=["resume to fail", "end the task"])
def test_window_trigger_past_its_deadline(end_task):
    trigger = WindowTrigger("t", ["r1"], open_at_most=0, deadline=time.time() - 1, end_task=end_task)
    with mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({"r1": "running"})):
        event = first_event(trigger)
    if end_task:
        assert event == TaskSuccessEvent()
    else:
        assert event == TriggerEvent({"timed_out": True, "pending": ["r1"]})


def test_window_trigger_serializes_to_itself():
    trigger = WindowTrigger(
        "t", ["a", "b"], 3, not_before=5.0, poll_interval=1.0, deadline=9.0, end_task=True
    )
    assert trigger.serialize()[0] == "include.controller.progress.WindowTrigger"
    assert rebuilt(trigger).serialize() == trigger.serialize()


# -------------------------------------------------------------------- BackfillProgressTrigger


def progress_trigger(**kwargs) -> BackfillProgressTrigger:
    defaults = {
        "controller_dag_id": "backfill_controller",
        "controller_run_id": "manual__1",
        "target_dag_id": "t",
        "run_ids": ["r1", "r2"],
        "chunk_size": 2,
        "poll_interval": 0.01,
    }
    return BackfillProgressTrigger(**{**defaults, **kwargs})


def chunk_states(states: dict[int, str]):
    return lambda **_: {"manual__1": {f"trigger_{i}": s for i, s in states.items()}}


@pytest.mark.parametrize(
    "end_task, expected", [(True, TaskSuccessEvent()), (False, TriggerEvent({"timed_out": False}))]
)
def test_progress_trigger_fires_once_every_run_has_finished(end_task, expected):
    trigger = progress_trigger(end_task=end_task)
    with (
        mock.patch(f"{RTI}.get_task_states", side_effect=chunk_states({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({"r1": "success", "r2": "failed"})),
    ):
        assert first_event(trigger) == expected


def test_progress_trigger_keeps_waiting_for_a_run_still_running():
    states = {"r1": "success", "r2": "running"}
    trigger = progress_trigger()

    def finish_later(**kwargs):
        count = open_runs(states)(**kwargs)
        states["r2"] = "success"  # finishes after the first look
        return count

    with (
        mock.patch(f"{RTI}.get_task_states", side_effect=chunk_states({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=finish_later) as count,
    ):
        assert first_event(trigger) == TriggerEvent({"timed_out": False})
    assert count.call_count >= 2


def test_progress_trigger_past_its_deadline_names_the_pending_runs():
    trigger = progress_trigger(deadline=time.time() - 1)
    with (
        mock.patch(f"{RTI}.get_task_states", side_effect=chunk_states({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({"r1": "success", "r2": "queued"})),
    ):
        assert first_event(trigger) == TriggerEvent({"timed_out": True, "pending": ["r1", "r2"]})


def test_progress_trigger_waits_for_dates_whose_chunk_has_not_acted_yet():
    trigger = progress_trigger(deadline=time.time() - 1)
    with (
        mock.patch(f"{RTI}.get_task_states", side_effect=chunk_states({0: "running"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({})),
    ):
        event = first_event(trigger)
    assert event == TriggerEvent({"timed_out": True, "pending": ["r1", "r2"]})


def test_progress_trigger_serializes_to_itself():
    trigger = progress_trigger(positions=[4, 5], deadline=12.5, end_task=True)
    classpath, kwargs = trigger.serialize()
    assert classpath == "include.controller.progress.BackfillProgressTrigger"
    assert kwargs["run_ids"] == ["r1", "r2"] and kwargs["positions"] == [4, 5]
    assert rebuilt(trigger).serialize() == (classpath, kwargs)
