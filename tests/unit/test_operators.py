"""The controller's operators, tested through what they raise or send (as Airflow tests
``TriggerDagRunOperator``): the ``TriggerDagRun`` request a chunk sends for a date and how it
reads Airflow's answer, the checks that hold the backfill's record against the run's own conf, the
order and failure budget of chunks, what each chunk records, and the plan task's deferred
overlap wait.

``RuntimeTaskInstance`` and ``SUPERVISOR_COMMS`` are mocked as Airflow's own provider tests do, and
the api-server's answers (``AirflowApi.work``, ``paused``, ``chunks``) are served from WORK
documents (:mod:`tests.unit.work_documents`) and the chunks' records it keeps: every test runs in
milliseconds, without an Airflow. No task reads an XCom: a test's task instance answers every
``xcom_pull`` with nothing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowRuntimeError,
    AirflowSkipException,
    ErrorType,
    TaskDeferred,
)
from airflow.sdk.execution_time.comms import ErrorResponse, OKResponse

from backfill_controller.contract import CONTROLLER_DAG_ID, TARGET_RUN_PREFIX, Task
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.plan import Action, Execution, Feeding
from backfill_controller.domain.report import audit_note
from backfill_controller.domain.state import ChunkRecord, Event, EventKind
from backfill_controller.worker import work as work_module
from backfill_controller.worker.operators import (
    NO_ROOM,
    PAUSED_HOLDS,
    PREVIOUS_CHUNK_LOOK,
    TARGET_FROM_RECORD,
    BackfillPlanOperator,
    BackfillReportOperator,
    BackfillSegmentOperator,
    BackfillTriggerOperator,
    BackfillWaitSensor,
)
from backfill_controller.worker.work import Work
from tests.unit.work_documents import HEAD, Served, date_plan, plans, work_document

COMMS = "airflow.sdk.execution_time.task_runner.SUPERVISOR_COMMS"
RTI = "airflow.sdk.execution_time.task_runner.RuntimeTaskInstance"
#: The one date of the default work, as the chunk starts it.
DATE = {
    "trigger_run_id": f"{TARGET_RUN_PREFIX}2024-01-01T00:00:00+00:00",
    "logical_date": "2024-01-01T00:00:00+00:00",
    "run_after": "2024-01-02T00:00:00+00:00",
    "reset_dag_run": False,
    "clear_task_ids": None,
    "planned_end_date": None,
}
NOTE = audit_note("why", "ada")
OTHER_RUN = "scheduled__2024-01-01T00:00:00+00:00"
NOT_PAUSED = {"paused": False, "paused_seconds": 0.0}
SERVED = Served()
#: The chunks' records the api-server holds (by controller run id), and those the tasks kept, in order.
CHUNKS: dict[str, list[dict[str, Any]]] = {}
KEPT: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def api() -> Iterator[mock.Mock]:
    """The REST client the tasks build from their connection: the api-server serves the works of
    :data:`SERVED` and the chunks' records of :data:`CHUNKS`, keeps what a chunk records in
    :data:`KEPT`, and the backfill is not paused. Each test starts in a new task process."""
    SERVED.works.clear()
    CHUNKS.clear()
    KEPT.clear()
    work_module.forget()
    with mock.patch("backfill_controller.client.airflow_api.AirflowApi.from_connection") as build:
        build.return_value.paused.return_value = NOT_PAUSED
        build.return_value.work.side_effect = SERVED.work
        build.return_value.chunks.side_effect = lambda run_id: CHUNKS.get(run_id, [])
        build.return_value.keep_chunk.side_effect = lambda run_id, record: KEPT.append(record)
        yield build.return_value
    work_module.forget()


def context(
    conf: dict | None = None,
    work: dict | None = None,
    *,
    try_number: int = 1,
    map_index: int = 0,
    records: list[dict] | None = None,
    run_id: str = HEAD,
) -> dict:
    """A task's context, its run's ``work`` served by the api-server (the default: one new date of
    ``sales``; None served for ``work={}``) with its chunks' ``records``."""
    SERVED.works.pop(run_id, None)
    if work != {}:
        SERVED.works[run_id] = work or work_document()
    CHUNKS[run_id] = records or []
    ti = mock.Mock(try_number=try_number, dag_id=CONTROLLER_DAG_ID, run_id=run_id, map_index=map_index)
    ti.xcom_pull.return_value = None
    dag_run = mock.Mock(conf={"dag_id": "sales"} if conf is None else conf, run_id=run_id)
    return {"ti": ti, "dag_run": dag_run}


def chunk(**kwargs) -> BackfillTriggerOperator:
    return BackfillTriggerOperator(task_id=Task.TRIGGER, **kwargs)


def loaded(ctx: dict, **kwargs) -> BackfillTriggerOperator:
    """A chunk that has read its work (what every entry point of the task does first)."""
    operator = chunk(**kwargs)
    operator._execution(ctx)
    return operator


def pushed_records(ctx: dict) -> list[dict[str, Any]]:
    """The :class:`ChunkRecord`\ s the task kept in the backfill's record, in order."""
    return list(KEPT)


def open_runs(known: dict[str, str]) -> Callable[..., int]:
    """A ``get_dr_count`` answering from ``{run_id: state}`` (runs not listed do not exist)."""

    def count(dag_id: str, run_ids: Iterable[str] = (), states: Iterable[str] | None = None, **_) -> int:
        return sum(1 for r in run_ids if r in known and (states is None or known[r] in states))

    return count


def run_state(known: dict[str, str]) -> Callable[..., str]:
    """A ``get_dagrun_state`` answering from ``{run_id: state}``, failing as Airflow does otherwise."""

    def state(dag_id: str, run_id: str) -> str:
        if run_id not in known:
            raise AirflowRuntimeError(
                ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail={"status_code": 404})
            )
        return known[run_id]

    return state


def sent_for(plan: dict, run_conf: dict, **request: Any):
    """The message the chunk sends to have the date of ``plan`` created or cleared, the run's conf
    being ``run_conf`` and its record's request holding ``request``."""
    ctx = context(run_conf, work_document([plan], **request))
    operator = loaded(ctx)
    with mock.patch(COMMS, create=True) as comms:
        comms.send.return_value = OKResponse(ok=True)
        operator._act(ctx, operator.dates[0], retry=False)
    (message,), _ = comms.send.call_args
    return message


def test_a_chunk_reads_its_dates_from_the_record():
    operator = loaded(context())
    assert (operator.dates, operator.first_position, operator.dates_label) == (
        [DATE],
        0,
        DATE["logical_date"],
    )


def test_a_new_date_is_triggered_with_its_logical_date_run_after_and_the_records_conf():
    message = sent_for(date_plan(1), {"dag_id": "sales"}, conf={"region": "eu"})
    assert type(message).__name__ == "TriggerDagRun"
    assert message.dag_id == "sales" and message.run_id == DATE["trigger_run_id"]
    assert message.logical_date.isoformat() == DATE["logical_date"]
    assert message.run_after.isoformat() == DATE["run_after"]
    assert message.conf == {"region": "eu"} and message.reset_dag_run is False and message.note == NOTE


def test_a_failed_date_with_reprocess_failed_is_cleared_under_its_own_run_id():
    plan = date_plan(1, OTHER_RUN, Action.CLEARED)
    with mock.patch.object(BackfillTriggerOperator, "_rest") as rest:
        rest.return_value.paused.return_value = NOT_PAUSED
        message = sent_for(plan, {"dag_id": "sales", "reprocess": "failed"}, reprocess="failed")
    rest.return_value.append_note.assert_called_once_with("sales", OTHER_RUN, NOTE)
    assert message.reset_dag_run is True and message.run_id == OTHER_RUN


def test_the_conf_given_to_runs_is_the_records_not_the_run_confs_nor_an_xcoms():
    ctx = context(
        {"dag_id": "sales", "conf": {"bash_command": "rm -rf /"}}, work_document(conf={"safe": True})
    )
    ctx["ti"].xcom_pull.side_effect = lambda **_: {"conf": {"bash_command": "rm -rf /"}}
    assert loaded(ctx).conf == {"safe": True}


def test_a_record_naming_another_target_than_the_runs_request_triggers_nothing():
    with pytest.raises(AirflowFailException, match="another DAG"):
        chunk()._execution(context({"dag_id": "sales"}, work_document(dag_id="other")))


def test_a_chunk_of_a_run_with_no_planned_record_triggers_nothing():
    with pytest.raises(AirflowFailException, match="belongs to no planned backfill"):
        chunk()._execution(context(work={}))


@pytest.mark.parametrize(
    "run_conf, request_conf",
    [({"dag_id": "sales"}, {}), ({"dag_id": "sales"}, {"reprocess": "failed"})],
    ids=["neither asks", "only the record asks"],
)
def test_a_record_that_clears_what_the_runs_request_never_asks_clears_nothing(run_conf, request_conf):
    plan = date_plan(1, OTHER_RUN, Action.CLEARED)
    ctx = context(run_conf, work_document([plan], **request_conf))
    operator = loaded(ctx)
    with mock.patch(COMMS, create=True) as comms, pytest.raises(AirflowFailException, match="never asks"):
        operator._act(ctx, operator.dates[0], retry=False)
    comms.send.assert_not_called()


# ------------------------------------------------------ what the mapped kwargs cannot change


def test_rewritten_mapped_kwargs_change_nothing_the_chunk_acts_on_the_records_dates():
    """The plan task's return value (the mapped kwargs) rewritten: another DAG, another run, no
    task selection, another conf and note. The chunk clears the record's task instances only."""
    plan = date_plan(1, OTHER_RUN, Action.CLEARED, task_ids=["load"], end_date="2024-01-02T01:00:00+00:00")
    ctx = context({"dag_id": "sales", "task_regex": "^load"}, work_document([plan], task_regex="^load"))
    forged = {**DATE, "trigger_run_id": "manual__victim", "reset_dag_run": True, "clear_task_ids": None}
    operator = chunk(
        chunk_index=0,
        dates_label="forged",
        trigger_dag_id="payroll",
        dates=[forged],
        first_position=5,
        conf={"bash_command": "rm -rf /"},
        note="forged",
        wait_for_completion=True,
    )
    assert operator.trigger_dag_id == TARGET_FROM_RECORD and operator.conf is None
    with (
        mock.patch.object(BackfillTriggerOperator, "_rest") as rest,
        mock.patch(f"{RTI}.get_dr_count", return_value=0),
        mock.patch(COMMS, create=True) as comms,
    ):
        rest.return_value.paused.return_value = NOT_PAUSED
        rest.return_value.clear_task_instances.return_value = ["load[-1]"]
        operator.execute(ctx)
    comms.send.assert_not_called()  # no run created: the record clears task instances only
    rest.return_value.clear_task_instances.assert_called_once_with("sales", OTHER_RUN, ["load"])
    rest.return_value.append_note.assert_called_once_with("sales", OTHER_RUN, NOTE)
    assert (operator.trigger_dag_id, operator.conf, operator.wait_for_completion) == ("sales", {}, False)
    assert operator.dates_label == DATE["logical_date"] and operator.first_position == 0
    rest.return_value.keep_chunk.assert_called_once_with(HEAD, ChunkRecord(0, 1).to_dict())


def test_a_chunk_is_the_chunk_of_its_map_index_whatever_its_kwargs_say():
    ctx = context(work=work_document(plans("r0", "r1", "r2")), map_index=1)
    operator = loaded(ctx, chunk_index=0)
    assert operator.chunk_index == 1 and operator.first_position == 2
    assert [d["trigger_run_id"] for d in operator.dates] == ["r2"]


# --------------------------------------------------------------------- Airflow's answer to a date


def refused(status: int, message: str, reason: str = "value_error") -> AirflowRuntimeError:
    """What ``SUPERVISOR_COMMS.send`` raises when the API server answers ``status`` (the supervisor
    wraps the server's JSON body, ``{"detail": {...}}``)."""
    detail = {
        "status_code": status,
        "message": f"Server returned error {status}",
        "detail": {"detail": {"reason": reason, "message": message}},
    }
    return AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail=detail))


EXISTS = ErrorResponse(error=ErrorType.DAGRUN_ALREADY_EXISTS)  # the client's answer to a 409
DENIED = "Dag with dag_id 'sales' does not allow operator-triggered runs"


def answering(answers: dict[str, Any], default: Any = None) -> Callable[[Any], Any]:
    """A ``SUPERVISOR_COMMS.send`` answering each ``TriggerDagRun`` by its run_id: a response, or an
    exception to raise; ``OKResponse`` for the others."""

    def send(message: Any) -> Any:
        answer = answers.get(message.run_id, default or OKResponse(ok=True))
        if isinstance(answer, Exception):
            raise answer
        return answer

    return send


def act(
    answer: Any, *, ours_exists: bool = False, at_logical_date: dict | None = None
) -> tuple[BackfillTriggerOperator, str | None, mock.Mock]:
    """One date acted on while Airflow answers its ``TriggerDagRun`` with ``answer``; ``ours_exists``:
    a run under the date's run_id exists; ``at_logical_date``: ``get_task_states``' answer for the
    date's logical date. Returns the operator, the run that carries the date, and that lookup."""
    ctx = context()
    operator = loaded(ctx)
    with (
        mock.patch(COMMS, create=True) as comms,
        mock.patch(f"{RTI}.get_dr_count", return_value=1 if ours_exists else 0),
        mock.patch(f"{RTI}.get_task_states", return_value=at_logical_date or {}) as lookup,
    ):
        comms.send.side_effect = answering({DATE["trigger_run_id"]: answer})
        carrier = operator._act(ctx, DATE, retry=False)
    return operator, carrier, lookup


def test_a_created_run_carries_its_date():
    operator, carrier, lookup = act(OKResponse(ok=True))
    assert carrier == DATE["trigger_run_id"] and operator.events == {}
    lookup.assert_not_called()


def test_a_409_for_our_own_run_is_done_already():
    """An earlier try of the chunk created it (its success was not recorded)."""
    operator, carrier, lookup = act(EXISTS, ours_exists=True)
    assert carrier == DATE["trigger_run_id"] and operator.events == {}
    lookup.assert_not_called()


def test_a_409_for_another_run_at_the_logical_date_adopts_that_run():
    operator, carrier, lookup = act(EXISTS, at_logical_date={OTHER_RUN: {"extract": "running"}})
    assert carrier == OTHER_RUN
    event = operator.events[DATE["trigger_run_id"]]
    assert (event.kind, event.run_id) == (EventKind.ADOPTED, OTHER_RUN)
    assert OTHER_RUN in event.message
    (call,) = lookup.call_args_list
    assert call.kwargs["dag_id"] == "sales"
    assert [d.isoformat() for d in call.kwargs["logical_dates"]] == [DATE["logical_date"]]


def test_a_500_from_a_run_at_the_same_logical_date_adopts_that_run_too():
    _, carrier, _ = act(refused(500, "duplicate key"), at_logical_date={OTHER_RUN: {}})
    assert carrier == OTHER_RUN


def test_a_400_refusal_is_recorded_with_airflows_message():
    operator, carrier, _ = act(refused(400, DENIED, reason="denied_run_type"))
    assert carrier is None
    event = operator.events[DATE["trigger_run_id"]]
    assert event.kind == EventKind.REFUSED
    assert event.message == f"Airflow refused the run (HTTP 400): {DENIED}"


def test_a_500_with_no_other_run_fails_the_try_so_the_task_retries():
    with pytest.raises(RuntimeError, match="could not create .*boom"):
        act(refused(500, "boom"))


def feed_answered(answers: dict[str, Any], at_logical_date: dict | None = None) -> tuple[dict, FakeWindow]:
    """A two-date chunk (``r0``, ``r1``) fed with room to spare, Airflow answering by run_id."""
    operator, ctx = feeder()
    window = FakeWindow([0])
    with (
        mock.patch(COMMS, create=True) as comms,
        mock.patch(f"{RTI}.get_dr_count", return_value=0),
        mock.patch(f"{RTI}.get_task_states", return_value=at_logical_date or {}),
    ):
        comms.send.side_effect = answering(answers)
        operator._feed(ctx, feeding_execution(deferred=False, window=4, total=2), 0, window)
    return ctx, window


def test_an_adopted_date_is_recorded_and_its_run_joins_the_window():
    ctx, window = feed_answered({"r0": EXISTS}, at_logical_date={OTHER_RUN: {}})
    assert window.candidates == [OTHER_RUN, "r1"]
    (record,) = pushed_records(ctx)
    assert (record["acted"], list(record["events"])) == (2, ["r0"])
    event = ChunkRecord.from_dict(record).events["r0"]
    assert (event.kind, event.run_id) == (EventKind.ADOPTED, OTHER_RUN)


def test_a_refused_date_is_recorded_and_the_chunk_goes_on_with_the_next_date():
    ctx, window = feed_answered({"r0": refused(400, DENIED, reason="denied_run_type")})
    assert window.candidates == ["r1"]  # nothing to wait for on the refused date
    (record,) = pushed_records(ctx)
    assert record["acted"] == 2 and record["stopped"] is None
    assert record["events"] == {
        "r0": {"kind": "refused", "message": f"Airflow refused the run (HTTP 400): {DENIED}", "run_id": None}
    }


def test_a_failing_try_records_the_dates_acted_on_and_why_it_stopped():
    operator, ctx = feeder()
    with (
        mock.patch(COMMS, create=True) as comms,
        mock.patch(f"{RTI}.get_task_states", return_value={}),
        pytest.raises(RuntimeError),
    ):
        comms.send.side_effect = answering({"r1": refused(503, "unavailable")})
        operator._feed(ctx, feeding_execution(deferred=False, window=4, total=2), 0, FakeWindow([0]))
    assert pushed_records(ctx) == [
        {"chunk": 0, "acted": 1, "events": {}, "stopped": "its trigger task failed (RuntimeError)"}
    ]


# ------------------------------------------------------------------------ chunks start in order


def chunk_states_answer(states: dict[int, str | None]) -> dict[str, dict[str, str | None]]:
    return {"manual__1": {f"trigger_{i}": s for i, s in states.items()}}


@pytest.mark.parametrize("before", ["up_for_retry", "running", "deferred", "up_for_reschedule", None])
def test_a_chunk_waits_rescheduled_while_the_chunk_before_has_not_finished(before):
    ctx = context()
    look = timedelta(seconds=PREVIOUS_CHUNK_LOOK)
    earliest = datetime.now(tz=UTC) + look
    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: before})) as states,
        pytest.raises(AirflowRescheduleException) as rescheduled,
    ):
        chunk(chunk_index=1)._wait_for_previous_chunk(ctx, feeding_execution(deferred=False))
    latest = datetime.now(tz=UTC) + look
    states.assert_called_once_with(dag_id=CONTROLLER_DAG_ID, task_ids=[Task.TRIGGER], run_ids=["manual__1"])
    # rescheduled PREVIOUS_CHUNK_LOOK seconds after the look
    assert earliest <= rescheduled.value.reschedule_date <= latest


@pytest.mark.parametrize("before", ["success", "failed", "skipped", "upstream_failed", "removed"])
def test_a_chunk_starts_once_the_chunk_before_has_finished(before):
    states = chunk_states_answer({0: "up_for_retry", 1: before})  # only the one just before counts
    with mock.patch(f"{RTI}.get_task_states", return_value=states):
        chunk(chunk_index=2)._wait_for_previous_chunk(context(), feeding_execution(deferred=False))


def test_a_chunk_whose_chunk_before_never_finishes_fails_at_the_deadline():
    one_a_chunk = Feeding(window=2, deferred=False, resume_at=1, chunk_size=1)
    ctx = context(work=work_document(plans("r0", "r1"), feeding=one_a_chunk), map_index=1)
    operator = loaded(ctx)
    past = feeding_execution(deferred=False, deadline=time.time() - 1)
    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: "up_for_retry"})),
        mock.patch("backfill_controller.worker.operators.why_stuck", return_value="stuck"),
        pytest.raises(
            AirflowFailException, match=r"timed out \(the chunk before it never finished\).*2024-01-02"
        ),
    ):
        operator._wait_for_previous_chunk(ctx, past)
    assert pushed_records(ctx) == [
        {"chunk": 1, "acted": 0, "events": {}, "stopped": "timed out (the chunk before it never finished)"}
    ]


def test_the_first_chunk_waits_for_nothing():
    with mock.patch(f"{RTI}.get_task_states") as states:
        chunk(chunk_index=0)._wait_for_previous_chunk(context(), feeding_execution(deferred=False))
    states.assert_not_called()


# ------------------------------------------------------------------------- the failure budget


def new_dates(count: int) -> list[dict[str, Any]]:
    """``count`` new dates ``r1``, ``r2``..."""
    return plans(*(f"r{i}" for i in range(1, count + 1)))


@pytest.mark.parametrize(
    ("runs", "records", "failed_before", "budget", "failed"),
    [
        ({"r1": "failed", "r2": "success"}, [], 1, 2, 2),
        ({"r1": "failed", "r2": "failed"}, [], 0, 2, 2),
        (
            {"r1": "failed"},
            [ChunkRecord(0, 2, {"r2": Event(EventKind.REFUSED, "no")}).to_dict()],
            0,
            2,
            2,
        ),
        ({"r1": "failed", "r2": "success"}, [], 3, 2, 4),
    ],
    ids=[
        "this segment's failures and the earlier segments' reach it",
        "this segment's failures reach it",
        "a refused date counts",
        "the earlier segments' alone are over it",
    ],
)
def test_a_spent_failure_budget_cancels_the_next_chunk(runs, records, failed_before, budget, failed):
    work = work_document(new_dates(4), max_failed_dates=budget, failed_before=failed_before)
    ctx = context(work=work, map_index=1, records=records)
    operator = chunk(chunk_index=1)
    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(runs)),
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=run_state(runs)),
        mock.patch(COMMS, create=True) as comms,
        pytest.raises(AirflowSkipException, match=f"{failed} dates failed and max_failed_dates is {budget}"),
    ):
        operator.execute(ctx)
    comms.send.assert_not_called()
    assert pushed_records(ctx) == [
        {"chunk": 1, "acted": 0, "events": {}, "stopped": f"max_failed_dates reached ({failed} dates failed)"}
    ]


def test_a_chunk_within_its_failure_budget_starts_once_the_earlier_dates_have_finished():
    runs = {"r1": "failed", "r2": "success"}
    ctx = context(work=work_document(new_dates(4), max_failed_dates=3, failed_before=1), map_index=1)
    operator = chunk(chunk_index=1)
    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(runs)) as count,
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=run_state(runs)),
        mock.patch.object(BackfillTriggerOperator, "_feed") as feed,
    ):
        operator.execute(ctx)
    # every earlier date was looked at, open or not, before the budget was counted
    assert mock.call(dag_id="sales", run_ids=["r1", "r2"], states=sorted(OPEN_RUN)) in count.mock_calls
    (call,) = feed.call_args_list
    assert call.args[2] == 0  # from the chunk's first date
    assert [d["trigger_run_id"] for d in operator.dates] == ["r3", "r4"] and operator.first_position == 2
    assert pushed_records(ctx) == []


# ------------------------------------------------------------------------- feeding the window


class FakeWindow:
    """The backfill's open runs as :class:`backfill_controller.worker.progress.Window` counts them."""

    def __init__(self, counts: list[int]):
        self.counts = list(counts)
        self.candidates: list[str] = []

    def count(self) -> int:
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]

    def add(self, run_id: str) -> None:
        self.candidates.append(run_id)


def feeding_execution(
    *, deferred: bool, window: int = 2, resume_at: int = 1, total: int = 10, deadline=None
) -> Execution:
    feed = Feeding(window=window, deferred=deferred, resume_at=resume_at, chunk_size=2)
    return Execution("sales", feed, deadline=deadline, total=total)


def feeder(n: int = 2) -> tuple[BackfillTriggerOperator, dict]:
    """A chunk of ``n`` new dates ``r0``, ``r1``..., its work read, and its context."""
    feed = Feeding(window=n, deferred=False, resume_at=n - 1, chunk_size=n)
    ctx = context(work=work_document(plans(*(f"r{i}" for i in range(n))), feeding=feed))
    return loaded(ctx), ctx


def carried(context: Any, date: dict, retry: bool) -> str:
    return date["trigger_run_id"]


def test_with_room_every_date_starts_at_once_and_the_last_chunk_just_ends():
    operator, ctx = feeder()
    window = FakeWindow([0])
    with mock.patch.object(BackfillTriggerOperator, "_act", side_effect=carried) as act:
        operator._feed(ctx, feeding_execution(deferred=True, window=4, total=2), 0, window)
    assert [c.args[1]["trigger_run_id"] for c in act.call_args_list] == ["r0", "r1"]
    assert window.candidates == ["r0", "r1"]
    assert pushed_records(ctx) == [ChunkRecord(0, 2).to_dict()]


def test_a_full_window_fed_deferred_waits_in_the_triggerer_from_the_next_date():
    operator, ctx = feeder()
    with (
        mock.patch.object(BackfillTriggerOperator, "_act", side_effect=carried) as act,
        mock.patch("backfill_controller.worker.operators._min_deferral", return_value=2.5),
        pytest.raises(TaskDeferred) as deferred,
    ):
        operator._feed(ctx, feeding_execution(deferred=True, window=2, resume_at=1), 0, FakeWindow([1]))
    assert act.call_count == 1  # one date fitted, the second waits
    assert deferred.value.method_name == "feed_more"
    assert deferred.value.kwargs == {"position": 1, "events": {}}
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "WindowTrigger" and trigger.open_at_most == 1 and not trigger.end_task
    assert pushed_records(ctx) == [ChunkRecord(0, 1).to_dict()]  # recorded before deferring


# --------------------------------------------------------------------------- pause and resume


def test_a_paused_backfill_starts_no_further_date_and_waits_deferred(api):
    operator, ctx = feeder(n=3)
    api.paused.reset_mock()
    operator.events = {"r0": Event(EventKind.ADOPTED, "taken", OTHER_RUN)}
    api.paused.side_effect = [NOT_PAUSED, {"paused": True, "paused_seconds": 0.0}]
    clock = itertools.count(0.0, PAUSED_HOLDS)  # one look a date: each look is as old as it may be
    with (
        mock.patch.object(BackfillTriggerOperator, "_act", side_effect=carried) as act,
        mock.patch("backfill_controller.worker.operators.time.monotonic", side_effect=lambda: next(clock)),
        pytest.raises(TaskDeferred) as deferred,
    ):
        operator._feed(ctx, feeding_execution(deferred=False, window=4, total=3), 0, FakeWindow([0]))
    assert act.call_count == 1  # the first date started before the pause; none after
    api.paused.assert_called_with("manual__1")
    assert deferred.value.method_name == "resume_feed"
    assert type(deferred.value.trigger).__name__ == "TimeDeltaTrigger"
    assert deferred.value.kwargs == {
        "position": 1,
        "events": {"r0": Event(EventKind.ADOPTED, "taken", OTHER_RUN).to_dict()},
    }
    assert pushed_records(ctx)[-1] == ChunkRecord(0, 1, dict(operator.events)).to_dict()


def test_a_burst_of_dates_asks_once_whether_the_backfill_is_paused(api):
    operator, ctx = feeder(n=3)
    api.paused.reset_mock()
    with mock.patch.object(BackfillTriggerOperator, "_act", side_effect=carried) as act:
        operator._feed(ctx, feeding_execution(deferred=False, window=4, total=3), 0, FakeWindow([0]))
    assert act.call_count == 3 and api.paused.call_count == 1


def test_a_resumed_chunk_goes_on_where_it_stopped_counting_what_it_started(api):
    """r0 was adopted (its run is another), r1 refused (no run), r2 started; r3 and r4 are left."""
    operator, ctx = feeder(n=5)
    events = {
        "r0": Event(EventKind.ADOPTED, "taken", OTHER_RUN).to_dict(),
        "r1": Event(EventKind.REFUSED, "no").to_dict(),
    }
    with mock.patch.object(BackfillTriggerOperator, "_feed") as feed:
        operator.resume_feed(ctx, None, position=3, events=events)
    (_, execution, position, window), _ = feed.call_args
    assert position == 3 and window.candidates == [OTHER_RUN, "r2"]
    assert operator.events["r1"].kind is EventKind.REFUSED


def test_time_spent_paused_moves_the_deadline(api):
    api.paused.return_value = {"paused": False, "paused_seconds": 600.0}
    deadline = time.time() + 60
    moved = chunk()._execution(context(work=work_document(deadline=deadline)))
    assert moved.deadline == deadline + 600.0


def test_a_deferred_chunk_carries_its_events_to_where_it_resumes():
    operator, ctx = feeder()
    operator.events = {"r0": Event(EventKind.REFUSED, "no")}
    with (
        mock.patch.object(BackfillTriggerOperator, "_act", return_value=None),
        mock.patch("backfill_controller.worker.operators._min_deferral", return_value=2.5),
        pytest.raises(TaskDeferred) as deferred,
    ):
        operator._feed(ctx, feeding_execution(deferred=True, window=1, resume_at=0), 1, FakeWindow([1]))
    assert deferred.value.kwargs == {
        "position": 1,
        "events": {"r0": Event(EventKind.REFUSED, "no").to_dict()},
    }


def test_a_chunk_resumed_past_its_deadline_records_why_it_stopped_and_fails():
    operator, ctx = feeder()
    events = {"r0": Event(EventKind.REFUSED, "no").to_dict()}
    with (
        mock.patch("backfill_controller.worker.operators.why_stuck", return_value="the target is paused"),
        pytest.raises(AirflowFailException, match="timed out .*the target is paused"),
    ):
        operator.feed_more(ctx, {"timed_out": True, "pending": ["r0"]}, position=1, events=events)
    assert pushed_records(ctx) == [{"chunk": 0, "acted": 1, "events": events, "stopped": NO_ROOM}]


def test_a_full_window_fed_in_the_worker_waits_there_until_a_run_finishes():
    operator, ctx = feeder()
    window = FakeWindow([1, 2, 2, 1])  # after the first date: full twice, then room
    with (
        mock.patch.object(BackfillTriggerOperator, "_act", side_effect=carried) as act,
        mock.patch("backfill_controller.worker.operators.time.sleep") as sleep,
    ):
        operator._feed(ctx, feeding_execution(deferred=False, window=2, total=2), 0, window)
    assert act.call_count == 2 and sleep.call_count >= 1


def test_a_window_that_never_has_room_fails_past_the_deadline_naming_the_dates():
    operator, ctx = feeder()
    execution = feeding_execution(deferred=False, window=1, deadline=time.time() - 1)
    with (
        mock.patch.object(BackfillTriggerOperator, "_act", side_effect=carried),
        mock.patch("backfill_controller.worker.operators.why_stuck", return_value="the target is paused"),
        pytest.raises(AirflowFailException, match="timed out .*the target is paused"),
    ):
        operator._feed(ctx, execution, 0, FakeWindow([1]))
    assert pushed_records(ctx) == [
        {"chunk": 0, "acted": 0, "events": {}, "stopped": f"timed out ({NO_ROOM})"}
    ]


def test_a_chunk_that_started_its_dates_hands_over_from_the_triggerer():
    operator, ctx = feeder()
    execution = feeding_execution(deferred=True, window=6, resume_at=2, total=10)
    with (
        mock.patch.object(BackfillTriggerOperator, "_act", side_effect=carried),
        pytest.raises(TaskDeferred) as deferred,
    ):
        operator._feed(ctx, execution, 0, FakeWindow([1]))
    assert deferred.value.method_name == "execute" and deferred.value.trigger.end_task is True
    assert pushed_records(ctx) == [ChunkRecord(0, 2).to_dict()]


# --------------------------------------------------------------------------- waiting for runs


def test_the_wait_sensor_waits_for_the_started_and_adopted_runs_still_open_only():
    """r1 ran, r2 runs, r3 was adopted (its run queued), r4 refused, r5 never started."""
    records = [
        ChunkRecord(
            0,
            4,
            {
                "r3": Event(EventKind.ADOPTED, "taken", OTHER_RUN),
                "r4": Event(EventKind.REFUSED, "no"),
            },
            stopped="timed out",
        ).to_dict()
    ]
    runs = {"r1": "success", "r2": "running", OTHER_RUN: "queued"}
    work = work_document(new_dates(5), feeding=Feeding(5, False, 4, 5), deadline=time.time() + 60, segments=2)
    ctx = context(work=work, records=records)
    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: "failed"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(runs)),
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=run_state(runs)),
        pytest.raises(TaskDeferred) as deferred,
    ):
        BackfillWaitSensor(task_id=Task.WAIT).execute(ctx)
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "BackfillProgressTrigger" and trigger.end_task is True
    assert trigger.run_ids == ["r2", OTHER_RUN]


def test_the_wait_sensor_of_a_run_that_starts_no_further_segment_leaves_the_waiting_to_the_report():
    for ctx in (
        context(work=work_document(new_dates(2))),
        context(work=work_document(new_dates(2), segment=1, segments=2)),
    ):
        with mock.patch(f"{RTI}.get_dr_count") as count:
            assert BackfillWaitSensor(task_id=Task.WAIT).execute(ctx) is None
        count.assert_not_called()


def test_the_wait_sensor_with_nothing_planned_or_nothing_open_ends_at_once():
    assert BackfillWaitSensor(task_id=Task.WAIT).execute(context(work={})) is None
    assert BackfillWaitSensor(task_id=Task.WAIT).execute(context(work=work_document(dry_run=True))) is None
    runs = {"r1": "success"}
    ctx = context(work=work_document(new_dates(1)))
    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(runs)),
    ):
        assert BackfillWaitSensor(task_id=Task.WAIT).execute(ctx) is None


# ------------------------------------------------------------------------ the report's wait


def report_context(runs_done_seconds_ago: float, **work: Any) -> dict:
    """The report task's context: a run of 4 new dates that began ``runs_done_seconds_ago``."""
    ctx = context(work=work_document(new_dates(4), deadline=time.time() + 60, **work))
    ctx["dag_run"].start_date = datetime.now(UTC) - timedelta(seconds=runs_done_seconds_ago)
    return ctx


def test_the_report_far_from_the_end_waits_deferred_and_hands_over_at_the_pace_so_far():
    """2 of 4 runs finished in an hour: the 2 left are expected to take another, so it defers."""
    runs = {"r1": "success", "r2": "success", "r3": "running", "r4": "queued"}
    ctx = report_context(3600)
    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(runs)),
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=run_state(runs)),
        pytest.raises(TaskDeferred) as deferred,
    ):
        BackfillReportOperator(task_id=Task.REPORT).execute(ctx)
    trigger = deferred.value.trigger
    assert deferred.value.method_name == "resume"
    assert trigger.run_ids == ["r3", "r4"] and trigger.end_task is False
    assert trigger.hand_over["finished_before"] == 2
    assert trigger.hand_over["started_at"] == pytest.approx(time.time() - 3600, abs=5)
    assert trigger.not_before > time.time()  # a resume right after deferring races the scheduler


def test_the_report_near_the_end_watches_the_last_runs_from_its_worker_and_reports_at_once():
    """2 of 4 runs finished in 4 s: it watches the 2 left itself and reports when they end."""
    runs = {"r1": "success", "r2": "success", "r3": "running", "r4": "queued"}
    looks = itertools.count()

    def r3_and_r4_end_on_the_third_look(**kwargs):
        if next(looks) >= 3:
            runs.update(r3="success", r4="success")
        return open_runs(runs)(**kwargs)

    ctx = report_context(4)
    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=r3_and_r4_end_on_the_third_look),
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=run_state(runs)),
        mock.patch("time.sleep") as sleep,
        mock.patch(
            "backfill_controller.worker.tasks.report_backfill", return_value={"success": True}
        ) as report,
    ):
        assert BackfillReportOperator(task_id=Task.REPORT).execute(ctx) == {"success": True}
    assert sleep.call_count >= 1 and report.call_count == 1


def test_the_report_handed_over_watches_the_candidates_it_was_given():
    runs = {"r3": "success", "r4": "success"}
    ctx = report_context(4)
    with (
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(runs)) as count,
        mock.patch("backfill_controller.worker.tasks.report_backfill", return_value={"success": True}),
    ):
        event = {"timed_out": False, "hand_over": True, "candidates": ["r3", "r4"]}
        assert BackfillReportOperator(task_id=Task.REPORT).resume(ctx, event) == {"success": True}
    assert count.call_args.kwargs["run_ids"] == ["r3", "r4"]


def test_the_report_past_the_deadline_names_the_dates_still_open_and_reports(capsys):
    ctx = report_context(4)
    with (
        mock.patch(f"{RTI}.get_dag", return_value=mock.Mock(is_paused=True)),
        mock.patch("backfill_controller.worker.tasks.report_backfill", return_value={"success": False}),
    ):
        event = {"timed_out": True, "pending": [new_dates(4)[2]["run_id"]]}
        assert BackfillReportOperator(task_id=Task.REPORT).resume(ctx, event) == {"success": False}
    logged = capsys.readouterr().out
    assert "timed out" in logged and "2024-01-03" in logged and "paused" in logged


LAST_SEGMENT = f"{HEAD}__segment_1"


def report_states(*states: str | None) -> Callable[..., dict]:
    """A ``get_task_states`` answering the last continuation's report in ``states``, one a look."""
    answers = iter(states)

    def answer(dag_id: str, task_ids: list[str], run_ids: list[str], **_) -> dict:
        assert task_ids == [Task.REPORT] and run_ids == [LAST_SEGMENT]
        state = next(answers)
        return {LAST_SEGMENT: {} if state is None else {Task.REPORT: state}}

    return answer


def test_a_head_report_whose_last_segment_never_started_reports_at_once():
    ctx = report_context(4, segments=2)
    with (
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({})),
        mock.patch(f"{RTI}.get_task_states") as states,
        mock.patch("backfill_controller.worker.tasks.report_backfill", return_value={"success": True}),
    ):
        assert BackfillReportOperator(task_id=Task.REPORT).execute(ctx) == {"success": True}
    states.assert_not_called()


def test_a_head_report_waits_deferred_for_its_last_segments_report_to_start():
    ctx = report_context(4, segments=2)
    with (
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({LAST_SEGMENT: "running"})),
        mock.patch(f"{RTI}.get_task_states", side_effect=report_states("deferred")),
        pytest.raises(TaskDeferred) as deferred,
    ):
        BackfillReportOperator(task_id=Task.REPORT).execute(ctx)
    trigger = deferred.value.trigger
    assert type(trigger).__name__ == "SegmentEndTrigger" and trigger.run_id == LAST_SEGMENT
    assert trigger.hand_over is True


def test_a_head_report_watches_its_last_segments_report_running_to_its_end_from_the_worker():
    ctx = report_context(4, segments=2)
    with (
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs({LAST_SEGMENT: "running"})),
        mock.patch(
            f"{RTI}.get_task_states", side_effect=report_states("running", "running", "success")
        ) as looks,
        mock.patch("time.sleep") as sleep,
        mock.patch(
            "backfill_controller.worker.tasks.own_part", side_effect=lambda *_: built.append(looks.call_count)
        ),
        mock.patch("backfill_controller.worker.tasks.report_backfill", return_value={"success": True}),
    ):
        built: list[int] = []
        assert BackfillReportOperator(task_id=Task.REPORT).execute(ctx) == {"success": True}
    assert sleep.call_count == 2
    assert built and built[0] == 1  # the head's own part, built while the last segment's report runs


def test_a_runs_part_of_the_result_is_built_once_per_task_process():
    from backfill_controller.worker import tasks

    ctx = report_context(4, segments=2)
    work = Work.from_dict(work_document(new_dates(4), segments=2))
    with (
        mock.patch.object(tasks, "segment_facts") as facts,
        mock.patch.object(tasks, "segment_dates", return_value=[]),
        mock.patch.object(tasks, "kept_chunks", return_value={}),
        mock.patch.object(tasks, "build_report", side_effect=lambda *a, **k: {"part": True}) as build,
    ):
        first = tasks.own_part(ctx, work)
        assert tasks.own_part(ctx, work) is first
    assert build.call_count == 1 and facts.call_args.kwargs["finished"] is True


# ----------------------------------------------------------------------------------- segments


def segment(**kwargs: Any) -> BackfillSegmentOperator:
    """The ``segment`` task as the DAG builds it, with ``kwargs`` mapped."""
    return BackfillSegmentOperator(
        task_id=Task.SEGMENT,
        trigger_dag_id=CONTROLLER_DAG_ID,
        wait_for_completion=True,
        deferrable=True,
        allowed_states=["success", "failed"],
        failed_states=[],
        **kwargs,
    )


def started_segment(ctx: dict, operator: BackfillSegmentOperator, runs: dict[str, str]):
    """The ``TriggerDagRun`` request the segment task raises (no continuation run exists yet)."""
    from airflow.sdk.exceptions import DagRunTriggerException

    with (
        mock.patch(f"{RTI}.get_task_states", return_value=chunk_states_answer({0: "success"})),
        mock.patch(f"{RTI}.get_dr_count", side_effect=open_runs(runs)),
        mock.patch(f"{RTI}.get_dagrun_state", side_effect=run_state(runs)),
        pytest.raises(DagRunTriggerException) as raised,
    ):
        operator.execute(ctx)
    return raised.value


def test_a_segment_starts_its_continuation_named_and_confed_by_the_record_and_the_heads_conf():
    head_conf = {"dag_id": "sales", "dates": ["2024-01-01"], "segment_size": 1, "max_failed_dates": 5}
    work = work_document(new_dates(2), segments=3, max_failed_dates=5)
    ctx = context(head_conf, work, map_index=1)  # the second continuation: segment 2
    SERVED.works[f"{HEAD}#1"] = {"plans": [], "report": None}  # segment 1 has not reported
    operator = segment(
        segment_index=1, trigger_run_id="manual__victim", conf={"dag_id": "payroll", "reprocess": "all"}
    )
    request = started_segment(ctx, operator, {"r1": "failed", "r2": "success"})
    assert (request.trigger_dag_id, request.dag_run_id) == (CONTROLLER_DAG_ID, f"{HEAD}__segment_2")
    assert request.conf == {
        "dag_id": "sales",
        "segment_size": 1,
        "max_failed_dates": 5,
        "continues": {"head_run_id": HEAD, "segment": 2, "failed_before": 1},
    }
    # The last segment: the head's report waits for it, to report the moment it ends.
    assert request.reset_dag_run is False and request.wait_for_completion is False


def test_a_segment_but_the_last_waits_for_its_continuation():
    ctx = context(work=work_document(new_dates(2), segments=3), map_index=0)
    request = started_segment(ctx, segment(), {"r1": "success", "r2": "success"})
    assert request.dag_run_id == f"{HEAD}__segment_1" and request.wait_for_completion is True


def test_a_segment_over_the_failure_budget_is_cancelled():
    work = work_document(new_dates(2), segments=2, max_failed_dates=1)
    with pytest.raises(AirflowSkipException, match="1 dates failed and max_failed_dates is 1"):
        started_segment(context(work=work, map_index=0), segment(segment_index=1), {"r1": "failed"})


@pytest.mark.parametrize(
    "work, map_index",
    [
        (work_document(segments=2, segment=1, head_run_id="manual__0"), 0),
        (work_document(segments=2), 1),
    ],
    ids=["a continuation starts no segment", "past the record's segments"],
)
def test_a_segment_the_record_does_not_have_starts_nothing(work, map_index):
    with pytest.raises(AirflowFailException, match="has no segment"):
        started_segment(context(work=work, map_index=map_index), segment(segment_index=1), {})


# ------------------------------------------------------------------------------------- plan


def test_the_plan_task_waits_deferred_for_an_overlapping_backfill():
    from backfill_controller.worker.tasks import OverlapWait

    operator = BackfillPlanOperator(task_id=Task.PLAN)
    ctx = context({"dag_id": "sales", "on_overlap": "wait"})
    with (
        mock.patch(
            "backfill_controller.worker.tasks.plan_backfill", side_effect=OverlapWait("dates overlap X")
        ),
        pytest.raises(TaskDeferred) as deferred,
    ):
        operator.execute(ctx)
    assert deferred.value.method_name == "plan_again"
    assert type(deferred.value.trigger).__name__ == "TimeDeltaTrigger"
    assert deferred.value.kwargs["waiting_since"] == pytest.approx(time.time(), abs=5)


def test_the_plan_task_gives_up_waiting_after_timeout_minutes_naming_the_other():
    from backfill_controller.worker.tasks import OverlapWait

    operator = BackfillPlanOperator(task_id=Task.PLAN)
    ctx = context({"dag_id": "sales", "on_overlap": "wait", "timeout_minutes": 1})
    with (
        mock.patch(
            "backfill_controller.worker.tasks.plan_backfill", side_effect=OverlapWait("dates overlap X")
        ),
        pytest.raises(AirflowFailException, match="dates overlap X; waited timeout_minutes"),
    ):
        operator.plan_again(ctx, waiting_since=time.time() - 120)
    ctx["ti"].xcom_push.assert_called_once()


def test_the_plan_task_returns_the_chunks_when_planning_succeeds():
    operator = BackfillPlanOperator(task_id=Task.PLAN)
    with mock.patch("backfill_controller.worker.tasks.plan_backfill", return_value=[{"chunk_index": 0}]):
        assert operator.execute(context({"dag_id": "sales"})) == [{"chunk_index": 0}]


def test_a_chunk_keeps_its_triggered_dag_link_once_for_its_last_run_not_once_a_date():
    operator, ctx = feeder(n=3)
    with mock.patch(COMMS, create=True) as comms:
        comms.send.return_value = OKResponse(ok=True)
        operator._feed(ctx, feeding_execution(deferred=False, window=4, total=3), 0, FakeWindow([0]))
    assert comms.send.call_count == 3
    links = [c.kwargs for c in ctx["ti"].xcom_push.call_args_list]
    assert links == [{"key": "_link_TriggerDagRunLink", "value": links[0]["value"]}]
    assert links[0]["value"].endswith("/dags/sales/runs/r2")
