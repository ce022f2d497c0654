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

from backfill_controller.contract import CONTROLLER_DAG_ID, Task
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.plan import Execution, Feeding
from backfill_controller.domain.state import ChunkRecord, Event, EventKind, SegmentFacts
from backfill_controller.worker.progress import (
    BATCH,
    BackfillProgressTrigger,
    SegmentEndTrigger,
    WindowTrigger,
    chunk_states,
    run_states,
    segment_facts,
)

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
    assert trigger.serialize()[0] == "backfill_controller.worker.progress.WindowTrigger"
    assert rebuilt(trigger).serialize() == trigger.serialize()


# -------------------------------------------------------------------- BackfillProgressTrigger


def progress_trigger(**kwargs) -> BackfillProgressTrigger:
    defaults = {"target_dag_id": "t", "run_ids": ["r1", "r2"], "poll_interval": 0.01}
    return BackfillProgressTrigger(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    "end_task, expected", [(True, TaskSuccessEvent()), (False, TriggerEvent({"timed_out": False}))]
)
def test_progress_trigger_fires_once_every_run_has_finished(end_task, expected):
    trigger = progress_trigger(end_task=end_task)
    with mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({"r1": "success", "r2": "failed"})):
        assert first_event(trigger) == expected


def test_progress_trigger_keeps_waiting_for_a_run_still_running():
    states = {"r1": "success", "r2": "running"}
    trigger = progress_trigger()

    def finish_later(**kwargs):
        count = open_runs(states)(**kwargs)
        states["r2"] = "success"  # finishes after the first look
        return count

    with mock.patch(f"{RTI}.get_dr_count", side_effect=finish_later) as count:
        assert first_event(trigger) == TriggerEvent({"timed_out": False})
    assert count.call_count >= 2


def test_progress_trigger_past_its_deadline_names_the_pending_runs():
    trigger = progress_trigger(deadline=time.time() - 1)
    with mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({"r1": "success", "r2": "queued"})):
        assert first_event(trigger) == TriggerEvent({"timed_out": True, "pending": ["r1", "r2"]})


def test_progress_trigger_does_not_wait_for_a_run_that_does_not_exist():
    """The sensor hands it the runs the backfill started; one never created is nothing to wait for."""
    trigger = progress_trigger(deadline=time.time() + 60)
    with mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({"r1": "success"})):
        assert first_event(trigger) == TriggerEvent({"timed_out": False})


def test_progress_trigger_asks_about_its_runs_in_batches():
    run_ids = [f"r{i}" for i in range(BATCH + 1)]
    trigger = progress_trigger(run_ids=run_ids)
    with mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({})) as count:
        first_event(trigger)
    assert [len(c.kwargs["run_ids"]) for c in count.call_args_list] == [BATCH, 1]
    assert all(sorted(c.kwargs["states"]) == sorted(OPEN_RUN) for c in count.call_args_list)


def test_progress_trigger_hands_over_once_the_open_runs_are_expected_to_end_soon():
    """8 runs finished in the 4 s since the backfill began, 2 left: about 1 s to go."""
    runs = {"r1": "running", "r2": "queued"}
    trigger = progress_trigger(hand_over={"started_at": time.time() - 4, "finished_before": 8})
    with mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(runs)):
        assert first_event(trigger) == TriggerEvent(
            {"timed_out": False, "hand_over": True, "candidates": ["r1", "r2"]}
        )


def test_progress_trigger_without_a_pace_waits_for_the_end():
    """No run has finished yet (or they take hours): it does not hand over, it fires at the end."""
    states = {"r1": "running", "r2": "running"}
    trigger = progress_trigger(hand_over={"started_at": time.time() - 3600, "finished_before": 0})

    def one_finishes_a_look(**kwargs):
        count = open_runs(states)(**kwargs)
        running = [r for r, s in states.items() if s == "running"]
        states.update(dict.fromkeys(running[:1], "success"))
        return count

    with mock.patch(f"{RTI}.get_dr_count", side_effect=one_finishes_a_look):
        assert first_event(trigger) == TriggerEvent({"timed_out": False})


def test_progress_trigger_serializes_to_itself():
    trigger = progress_trigger(
        deadline=12.5, end_task=True, hand_over={"started_at": 1.0, "finished_before": 3}
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "backfill_controller.worker.progress.BackfillProgressTrigger"
    assert kwargs == {
        "target_dag_id": "t",
        "run_ids": ["r1", "r2"],
        "poll_interval": 0.01,
        "deadline": 12.5,
        "end_task": True,
        "hand_over": {"started_at": 1.0, "finished_before": 3},
        "not_before": 0.0,
    }
    assert rebuilt(trigger).serialize() == (classpath, kwargs)


# -------------------------------------------------------------------------- SegmentEndTrigger


@pytest.mark.parametrize(
    ("hand_over", "states", "event"),
    [
        (True, [None, "deferred", "running"], {"timed_out": False, "hand_over": True}),
        (False, [None, "running", "failed"], {"timed_out": False, "hand_over": False}),
        (True, [None, "upstream_failed"], {"timed_out": False, "hand_over": False}),
    ],
)
def test_segment_end_trigger_fires_when_the_segments_report_runs_or_has_ended(hand_over, states, event):
    answers = iter(states)

    def report(**kwargs):
        state = next(answers)
        return {"s1": {} if state is None else {"report": state}}

    trigger = SegmentEndTrigger(controller_dag_id="backfill_controller", run_id="s1", hand_over=hand_over)
    with (
        mock.patch(f"{RTI}.get_task_states", side_effect=report),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({"s1": "running"})),
    ):
        assert first_event(trigger) == TriggerEvent(event)
    assert rebuilt(trigger).serialize() == trigger.serialize()


def test_segment_end_trigger_fires_for_a_run_gone_without_its_report():
    """A continuation run ended by a user, or deleted, before its report ran: nothing waits forever."""
    trigger = SegmentEndTrigger(controller_dag_id="backfill_controller", run_id="s1", hand_over=True)
    with (
        mock.patch(f"{RTI}.get_task_states", return_value={}),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({})),
    ):
        assert first_event(trigger) == TriggerEvent({"timed_out": False, "hand_over": False})


# ------------------------------------------------------------ what the tasks read of a backfill


def test_chunk_states_are_the_trigger_task_instances_by_map_index():
    answer = {"manual__1": {"trigger_0": "success", "trigger_1": "up_for_retry", "trigger_10": None}}
    with mock.patch(f"{RTI}.get_task_states", return_value=answer) as states:
        found = chunk_states(CONTROLLER_DAG_ID, "manual__1")
    assert found == {0: "success", 1: "up_for_retry", 10: None}
    states.assert_called_once_with(dag_id=CONTROLLER_DAG_ID, task_ids=[Task.TRIGGER], run_ids=["manual__1"])


def test_chunk_states_of_a_run_without_trigger_task_instances():
    with mock.patch(f"{RTI}.get_task_states", return_value={}):
        assert chunk_states(CONTROLLER_DAG_ID, "manual__1") == {}


def test_run_states_cost_one_call_for_a_batch_of_succeeded_runs():
    known = {"r1": "success", "r2": "success"}
    with (
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(known)) as count,
        mock.patch(f"{RTI}.get_dagrun_state") as one_by_one,
    ):
        assert run_states("t", ["r1", "r2", "r1"]) == known
    assert count.call_count == 1
    one_by_one.assert_not_called()


def run_state(known: dict[str, str]) -> Callable[..., str]:
    """A ``get_dagrun_state`` answering from ``{run_id: state}``, failing as Airflow does for a
    run that does not exist (the supervisor's answer to the API server's 404)."""
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse

    def state(dag_id: str, run_id: str) -> str:
        if run_id not in known:
            detail = {"status_code": 404, "message": "not found", "detail": {"detail": "not found"}}
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail=detail))
        return known[run_id]

    return state


def test_run_states_read_a_mixed_batch_run_by_run_leaving_out_missing_runs():
    known = {"r1": "success", "r2": "running"}
    with (
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(known)),
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=run_state(known)),
    ):
        assert run_states("t", ["r1", "r2", "r3"]) == known


def test_segment_facts_gather_chunk_states_records_and_the_adopted_runs_states():
    execution = Execution("t", Feeding(window=2, deferred=False, resume_at=1, chunk_size=2))
    record = ChunkRecord(0, 2, {"r2": Event(EventKind.ADOPTED, "taken", "scheduled__2")})
    ti = mock.Mock(dag_id=CONTROLLER_DAG_ID)
    known = {"r1": "success", "scheduled__2": "running"}  # r2: adopted, so no run of its own
    plans = [
        {"logical_date": "2024-01-01", "run_id": "r1", "action": "triggered"},
        {"logical_date": "2024-01-02", "run_id": "r2", "action": "triggered"},
    ]
    with (
        mock.patch(f"{RTI}.get_task_states", return_value={"manual__1": {"trigger_0": "success"}}),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(known)),
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=run_state(known)),
    ):
        facts = segment_facts(ti, "manual__1", execution, plans, ["r1", "r2"], {0: record}, finished=True)
    ti.xcom_pull.assert_not_called()
    assert facts == SegmentFacts(
        plans=plans,
        run_ids=["r1", "r2"],
        chunk_size=2,
        chunk_states={0: "success"},
        records={0: record},
        run_states=known,
        finished=True,
    )
