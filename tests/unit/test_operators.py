"""The controller's operators, tested through what they raise or send (as Airflow tests
``TriggerDagRunOperator``): the ``TriggerDagRun`` request a chunk sends for a date, the checks
that hold a stored plan against the run's own conf, and the plan task's deferred overlap wait."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from include.controller.operators import BackfillPlanOperator, BackfillTriggerOperator

COMMS = "airflow.sdk.execution_time.task_runner.SUPERVISOR_COMMS"
GATE = {"target_dag_id": "sales", "chunk_size": 2, "deadline": None}
DATE = {
    "trigger_run_id": "backfill_controller__2024-01-01T00:00:00+00:00",
    "logical_date": "2024-01-01T00:00:00+00:00",
    "run_after": "2024-01-02T00:00:00+00:00",
    "reset_dag_run": False,
    "clear_task_ids": None,
    "planned_end_date": None,
}


def context(conf: dict, gate: dict | None = None, try_number: int = 1) -> dict:
    ti = mock.Mock(try_number=try_number)
    ti.xcom_pull.side_effect = lambda task_ids, key, **_: {"gate": gate or GATE}.get(key)
    return {"ti": ti, "dag_run": mock.Mock(conf=conf, run_id="manual__1")}


def chunk(**kwargs) -> BackfillTriggerOperator:
    return BackfillTriggerOperator(task_id="trigger", trigger_dag_id="sales", note="why", **kwargs)


def sent_for(date: dict, conf: dict):
    """The message the chunk sends to have ``date``'s run created or cleared."""
    operator = chunk(dates=[date])
    ctx = context(conf)
    operator._gate(ctx)
    with mock.patch(COMMS, create=True) as comms:
        comms.send.return_value = mock.Mock(spec=[])  # not an ErrorResponse: the run was made
        operator._act(ctx, date, retry=False)
    (message,), _ = comms.send.call_args
    return message


def test_a_new_date_is_triggered_with_its_logical_date_run_after_and_the_run_conf():
    message = sent_for(DATE, {"dag_id": "sales", "conf": {"region": "eu"}})
    assert type(message).__name__ == "TriggerDagRun"
    assert message.dag_id == "sales" and message.run_id == DATE["trigger_run_id"]
    assert message.logical_date.isoformat() == DATE["logical_date"]
    assert message.run_after.isoformat() == DATE["run_after"]
    assert message.conf == {"region": "eu"} and message.reset_dag_run is False and message.note == "why"


def test_a_failed_date_with_reprocess_failed_is_cleared_under_its_own_run_id():
    date = {**DATE, "trigger_run_id": "scheduled__2024-01-01T00:00:00+00:00", "reset_dag_run": True}
    with mock.patch.object(BackfillTriggerOperator, "_rest") as rest:
        message = sent_for(date, {"dag_id": "sales", "reprocess": "failed"})
    rest.return_value.set_note.assert_called_once_with("sales", date["trigger_run_id"], "why")
    assert message.reset_dag_run is True and message.run_id == date["trigger_run_id"]


def test_the_conf_given_to_runs_is_the_run_confs_not_a_stored_plans():
    operator = chunk(dates=[DATE])
    ctx = context({"dag_id": "sales", "conf": {"safe": True}})
    ctx["ti"].xcom_pull.side_effect = lambda task_ids, key, **_: {
        "gate": GATE,
        "request": {"conf": {"bash_command": "rm -rf /"}},
    }.get(key)
    operator._gate(ctx)
    assert operator.conf == {"safe": True}


@pytest.mark.parametrize(
    "gate_target, operator_target",
    [("other", "sales"), ("sales", "other")],
    ids=["plan names another DAG", "chunk kwargs name another DAG"],
)
def test_a_stored_plan_naming_another_target_than_the_request_triggers_nothing(gate_target, operator_target):
    operator = BackfillTriggerOperator(task_id="trigger", trigger_dag_id=operator_target, dates=[DATE])
    with pytest.raises(AirflowFailException, match="another DAG"):
        operator._gate(context({"dag_id": "sales"}, gate={**GATE, "target_dag_id": gate_target}))


def test_a_stored_plan_that_clears_what_the_request_never_asks_clears_nothing():
    date = {**DATE, "reset_dag_run": True}
    operator = chunk(dates=[date])
    ctx = context({"dag_id": "sales"})  # reprocess missing: no clearing asked
    operator._gate(ctx)
    with mock.patch(COMMS, create=True) as comms, pytest.raises(AirflowFailException, match="never asks"):
        operator._act(ctx, date, retry=False)
    comms.send.assert_not_called()


# ------------------------------------------------------------------------------------- plan


def test_the_plan_task_waits_deferred_for_an_overlapping_backfill():
    from include.controller.tasks import OverlapWait

    operator = BackfillPlanOperator(task_id="plan")
    ctx = context({"dag_id": "sales", "on_overlap": "wait"})
    with (
        mock.patch("include.controller.tasks.plan_backfill", side_effect=OverlapWait("dates overlap X")),
        pytest.raises(TaskDeferred) as deferred,
    ):
        operator.execute(ctx)
    assert deferred.value.method_name == "plan_again"
    assert type(deferred.value.trigger).__name__ == "TimeDeltaTrigger"
    assert deferred.value.kwargs["waiting_since"] == pytest.approx(time.time(), abs=5)


def test_the_plan_task_gives_up_waiting_after_timeout_minutes_naming_the_other():
    from include.controller.tasks import OverlapWait

    operator = BackfillPlanOperator(task_id="plan")
    ctx = context({"dag_id": "sales", "on_overlap": "wait", "timeout_minutes": 1})
    with (
        mock.patch("include.controller.tasks.plan_backfill", side_effect=OverlapWait("dates overlap X")),
        pytest.raises(AirflowFailException, match="dates overlap X; waited timeout_minutes"),
    ):
        operator.plan_again(ctx, waiting_since=time.time() - 120)
    ctx["ti"].xcom_push.assert_called_once()


def test_the_plan_task_returns_the_chunks_when_planning_succeeds():
    operator = BackfillPlanOperator(task_id="plan")
    with mock.patch("include.controller.tasks.plan_backfill", return_value=[{"chunk_index": 0}]):
        assert operator.execute(context({"dag_id": "sales"})) == [{"chunk_index": 0}]


# ------------------------------------------------------------------------- feeding the window


class FakeWindow:
    """The backfill's open runs as :class:`include.controller.progress.Window` counts them."""

    def __init__(self, counts: list[int]):
        self.counts = list(counts)
        self.candidates: list[str] = []

    def count(self) -> int:
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]

    def add(self, run_id: str) -> None:
        self.candidates.append(run_id)


def feeding_gate(
    *, deferred: bool, window: int = 2, resume_at: int = 1, total: int = 10, deadline=None
) -> dict:
    feed = {"window": window, "deferred": deferred, "resume_at": resume_at, "chunk_size": 2}
    return {**GATE, "feeding": feed, "total": total, "deadline": deadline}


def feeder(n: int = 2, first_position: int = 0) -> BackfillTriggerOperator:
    dates = [{**DATE, "trigger_run_id": f"r{i}"} for i in range(n)]
    return chunk(dates=dates, first_position=first_position)


def test_with_room_every_date_starts_at_once_and_the_last_chunk_just_ends():
    operator, ctx = feeder(), context({"dag_id": "sales"})
    with mock.patch.object(BackfillTriggerOperator, "_act") as act:
        operator._feed(ctx, feeding_gate(deferred=True, window=4, total=2), 0, FakeWindow([0]))
    assert [c.args[1]["trigger_run_id"] for c in act.call_args_list] == ["r0", "r1"]
    ctx["ti"].xcom_push.assert_called_once_with(key="trigger_run_id", value=["r0", "r1"])


def test_a_full_window_fed_deferred_waits_in_the_triggerer_from_the_next_date():
    operator, ctx = feeder(), context({"dag_id": "sales"})
    with (
        mock.patch.object(BackfillTriggerOperator, "_act") as act,
        mock.patch("include.controller.operators._min_deferral", return_value=2.5),
        pytest.raises(TaskDeferred) as deferred,
    ):
        operator._feed(ctx, feeding_gate(deferred=True, window=2, resume_at=1), 0, FakeWindow([1]))
    assert act.call_count == 1  # one date fitted, the second waits
    assert deferred.value.method_name == "feed_more" and deferred.value.kwargs == {"position": 1}
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "WindowTrigger" and trigger.open_at_most == 1 and not trigger.end_task


def test_a_full_window_fed_in_the_worker_waits_there_until_a_run_finishes():
    operator, ctx = feeder(), context({"dag_id": "sales"})
    window = FakeWindow([1, 2, 2, 1])  # after the first date: full twice, then room
    with (
        mock.patch.object(BackfillTriggerOperator, "_act") as act,
        mock.patch("include.controller.operators.time.sleep") as sleep,
    ):
        operator._feed(ctx, feeding_gate(deferred=False, window=2, total=2), 0, window)
    assert act.call_count == 2 and sleep.call_count >= 1


def test_a_window_that_never_has_room_fails_past_the_deadline_naming_the_dates():
    operator, ctx = feeder(), context({"dag_id": "sales"})
    gate = feeding_gate(deferred=False, window=1, deadline=time.time() - 1)
    with (
        mock.patch.object(BackfillTriggerOperator, "_act"),
        mock.patch("include.controller.operators.why_stuck", return_value="the target is paused"),
        pytest.raises(AirflowFailException, match="timed out .*the target is paused"),
    ):
        operator._feed(ctx, gate, 0, FakeWindow([1]))


def test_a_chunk_that_started_its_dates_hands_over_from_the_triggerer():
    operator, ctx = feeder(), context({"dag_id": "sales"})
    with mock.patch.object(BackfillTriggerOperator, "_act"), pytest.raises(TaskDeferred) as deferred:
        operator._feed(ctx, feeding_gate(deferred=True, window=6, resume_at=2, total=10), 0, FakeWindow([1]))
    assert deferred.value.method_name == "execute" and deferred.value.trigger.end_task is True


def test_with_a_failure_budget_spent_the_next_chunk_is_cancelled():
    from airflow.sdk.exceptions import AirflowSkipException

    operator = feeder(first_position=2)
    gate = {**feeding_gate(deferred=False), "max_failed_dates": 1, "failed_before": 1}
    with (
        mock.patch.object(BackfillTriggerOperator, "_gate", return_value=gate),
        mock.patch("include.controller.operators._watch"),
        mock.patch("include.controller.operators.Window", return_value=FakeWindow([0])),
        mock.patch("include.controller.operators.observe", return_value={}),
        pytest.raises(AirflowSkipException, match="max_failed_dates is 1"),
    ):
        operator.execute(context({"dag_id": "sales"}))
