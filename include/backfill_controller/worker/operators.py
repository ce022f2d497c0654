"""The controller's operators: a chunk of ``TriggerDagRunOperator`` work, and a sensor for the result.

``BackfillTriggerOperator`` is mapped over the chunks of the dates to act on, and its task
instances run one after another (``max_active_tis_per_dagrun=1``). Each starts its dates in order
through ``TriggerDagRunOperator``'s own path (a new run, or ``reset_dag_run`` to clear and re-run
an existing one), each as soon as the backfill's window has room
(:func:`backfill_controller.domain.plan.room`). How it waits while the window is full depends on
the target (:func:`backfill_controller.domain.plan.feeding`): when the target's own
``max_active_runs`` already holds the backfill's runs back, the window also holds queued runs and
the task waits deferred (:class:`backfill_controller.worker.progress.WindowTrigger`, no executor
slot); otherwise it waits in its worker, one ``GetDRCount`` call every half second.
With a failure budget (``max_failed_dates``), a chunk starts once every earlier date has
finished, and only while the budget lasts.

``BackfillWaitSensor`` (one per controller run) waits, deferred in the triggerer, until every run
has finished, and then ends itself from the triggerer.

Every operator takes its work from the backfill's record in the api-server
(:mod:`backfill_controller.worker.work`): never from the plan task's XComs, which anyone who may
edit the controller's XComs can rewrite, nor from what its upstream XCom maps into its kwargs
beyond which task instance it is.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseOperator, BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
    TaskDeferred,
)
from airflow.utils.state import DagRunState

from backfill_controller.contract import CONTINUES_KEY, MESSAGE_CHARS
from backfill_controller.domain.airflow_states import FINISHED_RUN, OPEN_RUN, TASK_FINISHED, TASK_RUNNING
from backfill_controller.domain.plan import (
    HOLD_SECONDS,
    Execution,
    Feeding,
    min_deferral_seconds,
    near_end,
    room,
)
from backfill_controller.domain.report import audit_note
from backfill_controller.domain.request import parse_datetime
from backfill_controller.domain.rights import may_clear
from backfill_controller.domain.segments import continuation_conf
from backfill_controller.domain.settings import poll_interval, timeout_minutes
from backfill_controller.domain.state import (
    ChunkRecord,
    DateOutcome,
    Event,
    EventKind,
    acted_on,
    adopted_run_ids,
    failed_dates,
    open_run_ids,
    segment_dates,
)
from backfill_controller.worker.progress import (
    BackfillProgressTrigger,
    SegmentEndTrigger,
    Window,
    WindowTrigger,
    chunk_states,
    report_state,
    segment_facts,
    why_stuck,
)
from backfill_controller.worker.work import Work, api, kept_chunks, refuse, work_if_planned, work_of

#: Seconds between looks at the last runs while the ``report`` task watches them from its worker.
TAIL_LOOK = 0.2
#: Seconds between looks at the window while a chunk waits for room in its worker: one cheap
#: call, so short.
FEED_INTERVAL = 0.5
#: The same while it waits deferred: the queued reserve covers a slower look, and the triggerer
#: and the API server have less to do.
DEFERRED_FEED_INTERVAL = 1.0
#: Seconds a chunk waits, holding no slot, before it looks again whether the chunk before it
#: (in a retry) has finished.
PREVIOUS_CHUNK_LOOK = 5.0
NO_ROOM = "the window never had room for the next date"
PREVIOUS_CHUNK = "the chunk before it never finished"
#: Seconds between looks at whether a paused backfill has been resumed (the task waits deferred).
PAUSE_LOOK = 5.0
#: Seconds one look at whether the backfill is paused holds while a chunk starts its dates: a
#: burst of dates asks once, and a pause stops the chunk within about this long.
PAUSED_HOLDS = 1.0
#: The context keys ``TriggerDagRunOperator.execute`` finds the task instance by.
TASK_INSTANCE_KEYS = frozenset({"ti", "task_instance"})
#: What ``trigger_dag_id`` holds until a chunk has read its target from the record: it must be
#: given to ``TriggerDagRunOperator``, and is never a DAG's id.
TARGET_FROM_RECORD = "(the target of the backfill's record)"
#: ``BaseOperator``'s arguments: how a task runs, not what it does. Those the DAG gives in
#: ``.partial()`` a mapping cannot override, and the scheduler and impersonation read none of them
#: from the mapped kwargs.
_TASK_ARGUMENTS = frozenset(
    {*inspect.signature(BaseOperator.__init__).parameters, "_airflow_mapped_validation_only"}
) - {"self", "kwargs"}


def _without_work(kwargs: dict[str, Any], keep: Collection[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """``kwargs`` without what would tell a ``TriggerDagRunOperator`` what to do (target, run id,
    conf, dates...): the operator reads its work from the record. Returns the arguments kept and
    the names of those dropped. ``keep``: the operator's own arguments its DAG gives."""
    kept = {key: value for key, value in kwargs.items() if key in _TASK_ARGUMENTS or key in keep}
    return kept, sorted(set(kwargs) - set(kept))


def _min_deferral() -> float:
    """:func:`backfill_controller.domain.plan.min_deferral_seconds` for this worker's configuration."""
    from airflow.sdk.configuration import conf

    return min_deferral_seconds(conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0))


def with_pauses(execution: Execution, paused_seconds: float) -> Execution:
    """The execution with its deadline moved by the time the backfill has spent paused."""
    if execution.deadline is None or not paused_seconds:
        return execution
    return replace(execution, deadline=execution.deadline + paused_seconds)


def stored_execution(context: Any) -> Execution | None:
    """This controller run's :class:`backfill_controller.domain.plan.Execution`, from the record
    (None: nothing planned, or a dry run)."""
    work = work_if_planned(context)
    return work.execution if work is not None else None


def dates_so_far(context: Any, execution: Execution, upto: int | None = None) -> list[DateOutcome]:
    """Where this controller run's acting dates are (the first ``upto`` of them), as the report says."""
    ti, work = context["ti"], work_of(context)
    run_ids = list(work.run_ids)[:upto]
    wanted = set(run_ids)
    plans = [p for p in work.plan_dicts() if p["run_id"] in wanted]
    facts = segment_facts(ti, ti.run_id, execution, plans, run_ids, kept_chunks(ti.run_id), finished=False)
    return segment_dates(facts)


def _timeout_message(context: Any, execution: Execution, stuck_run_ids: Sequence[str], what: str) -> str:
    """Which dates did not finish in time, and the likely reason."""
    dates = {p.run_id: p.logical_date.isoformat() for p in work_of(context).plans}
    stuck = sorted(dates.get(r, r) for r in set(stuck_run_ids))
    shown = ", ".join(stuck[:20]) + (f" and {len(stuck) - 20} more" if len(stuck) > 20 else "")
    target = execution.target_dag_id
    return (
        f"timed out ({what}): {len(stuck)} date(s) of {target} did not finish: {shown}; {why_stuck(target)}"
    )


class BackfillPlanOperator(BaseOperator):
    """Plan the backfill (:func:`backfill_controller.worker.tasks.plan_backfill`); wait deferred while an
    overlapping backfill runs and the request says ``on_overlap: wait``.

    The wait holds no executor slot: the task defers for :func:`overlap_look_seconds` and plans
    again, until the request's ``timeout_minutes`` have passed since it first had to wait.
    ``execution_timeout`` bounds each planning attempt, not the wait.
    """

    template_fields = ()
    ui_color = "#fdf6e3"

    def execute(self, context: Any) -> Any:
        return self._plan(context, waiting_since=None)

    def plan_again(self, context: Any, event: Any = None, waiting_since: float | None = None) -> Any:
        return self._plan(context, waiting_since=waiting_since)

    def _plan(self, context: Any, waiting_since: float | None) -> Any:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        from backfill_controller.worker.tasks import OverlapWait, plan_backfill

        try:
            return plan_backfill(**context)
        except OverlapWait as wait:
            since = waiting_since or time.time()
            minutes = (context["dag_run"].conf or {}).get("timeout_minutes") or timeout_minutes()
            if time.time() - since > 60 * minutes:
                message = f"{wait}; waited timeout_minutes for it; wait longer or cancel it"
                refuse(context["ti"], message)
            self.log.info("%s: waiting for it", wait)
            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=overlap_look_seconds())),
                method_name="plan_again",
                kwargs={"waiting_since": since},
            )


def overlap_look_seconds() -> float:
    """Seconds between looks while waiting for an overlapping backfill (never below the deferral floor)."""
    return max(_min_deferral(), 2 * poll_interval())


class BackfillTriggerOperator(TriggerDagRunOperator):
    """Trigger (or clear and re-run) the target runs of one chunk, each once the backfill has room.

    :param chunk_index: which chunk (0-based, in run order); the task instance's map index, which
        it is, prevails.
    :param dates_label: shown as the map index in the UI (first and last date); replaced by the
        label of the chunk's dates as the record has them.

    Everything else the task reads from the backfill's record when it runs
    (:meth:`backfill_controller.worker.work.Work.chunk`): the target (``trigger_dag_id``), the
    chunk's dates (each: the run to create or clear, its logical date and ``run_after``, whether
    it is cleared and which task instances only, the run's end date when planned), where the chunk
    starts among the run's acting dates, the conf given to each run (the request's) and the run
    note (who asked, and why). ``TriggerDagRunOperator``'s own arguments, given or mapped, are
    ignored. Nothing is templated: user text (conf, reason) must never be rendered as a Jinja
    template.

    Chunks start one after another, in order, also across retries: a chunk starts only once the
    chunk before it has finished (a chunk waiting for its retry holds no slot meanwhile). Each date
    ends one way: its run created or cleared; adopted (another run had its logical date already);
    or refused by Airflow (``trigger_failed``, Airflow's message kept). The task records which
    (:class:`backfill_controller.domain.state.ChunkRecord`) before it ends, defers or fails.
    """

    template_fields = ()
    ui_color = "#e8f4ea"

    def __init__(self, *, chunk_index: int = 0, dates_label: str = "", **kwargs: Any) -> None:
        kwargs, self.ignored = _without_work(kwargs)
        super().__init__(
            trigger_dag_id=TARGET_FROM_RECORD,
            wait_for_completion=False,
            deferrable=False,
            openlineage_inject_parent_info=False,
            **kwargs,
        )
        self.chunk_index = chunk_index
        self.dates_label = dates_label
        self.first_position = 0
        self.dates: list[dict[str, Any]] = []
        self.planned_end_date: str | None = None
        self.clear_task_ids: list[Any] | None = None
        self.may_clear = False
        self.events: dict[str, Event] = {}
        self._paused_seen: tuple[float, bool] | None = None  # (when, paused): :meth:`_paused_now`
        self.last_started: str | None = None  # the run the task's "Triggered DAG" link shows

    def execute(self, context: Any) -> None:
        execution = self._execution(context)
        self._wait_for_previous_chunk(context, execution)
        window = Window(execution.target_dag_id, self._earlier_run_ids(context))
        if execution.max_failed_dates is not None:
            finished = "the earlier dates never finished"
            self._wait_until(context, execution, window, lambda: window.count() == 0, finished)
            self._check_budget(context, execution)
        self._feed(context, execution, 0, window)

    def feed_more(
        self, context: Any, event: dict[str, Any], position: int, events: dict[str, Any] | None = None
    ) -> None:
        """Resumed from waiting deferred for room: start the chunk's dates from ``position``."""
        execution = self._execution(context)
        self.events = {run_id: Event.from_dict(e) for run_id, e in (events or {}).items()}
        if event.get("timed_out"):
            message = _timeout_message(context, execution, event.get("pending") or [], NO_ROOM)
            self._record(context, position, stopped=NO_ROOM)
            raise AirflowFailException(message)
        self._feed(context, execution, position, Window(execution.target_dag_id, event["candidates"]))

    def _execution(self, context: Any) -> Execution:
        """Read the chunk's work from the backfill's record, and return the run's execution (its
        deadline moved by the time the backfill has spent paused).

        The record is the only source: XComs, this task's mapped kwargs among them, can be
        rewritten by anyone who may edit the controller's XComs. The run's own conf, which
        nobody can change once the run exists, is held against it: a record naming another
        target, or clearing what the conf never asks, starts nothing.
        """
        work = work_of(context)
        if self.ignored:
            self.log.warning("ignored, read from the backfill's record instead: %s", ", ".join(self.ignored))
        if work.execution is None:
            raise AirflowFailException(
                "the backfill's record holds no execution for this run: nothing to start"
            )
        asked = context["dag_run"].conf or {}
        request = work.request
        if request.target_dag_id != asked.get("dag_id"):
            raise AirflowFailException("the backfill's record names another DAG than this run's request")
        index = context["ti"].map_index
        if isinstance(index, int) and index >= 0 and index != self.chunk_index:
            self.log.warning(
                "mapped as chunk %s, this is map index %d: chunk %d", self.chunk_index, index, index
            )
            self.chunk_index = index
        chunk = work.chunk(self.chunk_index)
        self.first_position, self.dates, self.dates_label = (
            chunk.first_position,
            list(chunk.dates),
            chunk.label,
        )
        self.trigger_dag_id = request.target_dag_id
        self.conf = dict(request.conf)
        self.note = audit_note(request.reason, work.requester)
        self.may_clear = may_clear(request.to_dict()) and may_clear(asked)
        return with_pauses(work.execution, self._paused(context)["paused_seconds"])

    def _paused(self, context: Any) -> dict[str, Any]:
        """Whether a user paused the backfill, and for how long it has been paused in all."""
        return dict(self._rest().paused(context["ti"].run_id))

    def _paused_now(self, context: Any) -> bool:
        """Whether the backfill is paused, as last seen at most :data:`PAUSED_HOLDS` seconds ago."""
        now = time.monotonic()
        if self._paused_seen is None or now - self._paused_seen[0] >= PAUSED_HOLDS:
            self._paused_seen = (now, bool(self._paused(context)["paused"]))
        return self._paused_seen[1]

    def _wait_for_previous_chunk(self, context: Any, execution: Execution) -> None:
        """Start only once the chunk before has finished: a chunk waiting for its retry frees its
        ``max_active_tis_per_dagrun`` slot, and the dates must still go in order. Waits
        rescheduled (no slot held), so the retry can take the slot; fails past the deadline."""
        if self.chunk_index == 0:
            return
        ti = context["ti"]
        before = chunk_states(ti.dag_id, ti.run_id).get(self.chunk_index - 1)
        if before not in TASK_FINISHED:
            if execution.past_deadline(time.time()):
                self._record(context, 0, stopped=f"timed out ({PREVIOUS_CHUNK})")
                message = _timeout_message(
                    context, execution, [d["trigger_run_id"] for d in self.dates], PREVIOUS_CHUNK
                )
                raise AirflowFailException(message)
            self.log.info("chunk %d is %s: starting once it has finished", self.chunk_index - 1, before)
            again = datetime.now(tz=UTC) + timedelta(seconds=PREVIOUS_CHUNK_LOOK)
            raise AirflowRescheduleException(reschedule_date=again)

    def _earlier_run_ids(self, context: Any) -> list[str]:
        """The runs of the earlier chunks that may still be open: their dates' runs and those
        adopted (a refused date has none). Counted in batches by :class:`Window`: no run read
        one by one."""
        run_ids = list(work_of(context).run_ids)[: self.first_position]
        records = kept_chunks(context["ti"].run_id)
        return [*run_ids, *adopted_run_ids(records)]

    def _feed(self, context: Any, execution: Execution, position: int, window: Window) -> None:
        """Start the chunk's dates from ``position``, each once the window has room.

        While the window is full the task waits in its worker, or deferred in the triggerer when
        Airflow itself holds the backfill's extra runs queued
        (:func:`backfill_controller.domain.plan.feeding`).
        """
        feed = execution.feeding
        open_runs = window.count()
        self.log.info(
            "%d of %d runs open; next: date %d of %d in this chunk",
            open_runs,
            feed.window,
            position + 1,
            len(self.dates),
        )
        retry = context["ti"].try_number > 1
        index = position
        try:
            for index in range(position, len(self.dates)):
                if not room(open_runs, feed.window):
                    if feed.deferred:
                        self._defer_for_room(context, execution, window, feed, open_runs, index)
                    self._wait_until(
                        context, execution, window, lambda: room(window.count(), feed.window) > 0, NO_ROOM
                    )
                    open_runs = window.count()
                if self._paused_now(context):
                    self._wait_paused(context, index)
                carrier = self._act(context, self.dates[index], retry)
                if carrier is not None:
                    window.add(carrier)
                    open_runs += 1
                    self.last_started = carrier
            index = len(self.dates)
        except AirflowFailException as failure:
            self._record(context, index, stopped=str(failure).split(":")[0])
            raise
        except TaskDeferred:
            raise  # recorded before deferring
        except Exception as error:
            self._record(context, index, stopped=f"its trigger task failed ({type(error).__name__})")
            raise
        self._record(context, len(self.dates))
        last_chunk = self.first_position + len(self.dates) >= execution.total
        past = execution.past_deadline(time.time())
        if feed.deferred and not last_chunk and open_runs > feed.resume_at and not past:
            # Hand over to the next chunk once a burst fits: the task ends from the triggerer, so
            # the next chunk's task does not start only to find the window full.
            self.log.info(
                "all dates started; the next chunk starts once at most %d runs are open", feed.resume_at
            )
            trigger = self._window_trigger(execution, window, feed, end_task=True)
            self.defer(trigger=trigger, method_name="execute")

    def _wait_paused(self, context: Any, position: int) -> None:
        """Paused: wait deferred (no slot held), then go on from ``position`` (:meth:`resume_feed`)."""
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        self.log.info("the backfill is paused: date %d of this chunk starts once it is resumed", position + 1)
        self._record(context, position)
        events = {run_id: e.to_dict() for run_id, e in self.events.items()}
        self.defer(
            trigger=TimeDeltaTrigger(timedelta(seconds=max(PAUSE_LOOK, _min_deferral()))),
            method_name="resume_feed",
            kwargs={"position": position, "events": events},
        )

    def resume_feed(
        self, context: Any, event: Any = None, position: int = 0, events: dict[str, Any] | None = None
    ) -> None:
        """Looked again after a pause: start the chunk's dates from ``position`` (or wait again)."""
        execution = self._execution(context)
        self.events = {run_id: Event.from_dict(e) for run_id, e in (events or {}).items()}
        started = [self._carrier(d["trigger_run_id"]) for d in self.dates[:position]]
        window = Window(execution.target_dag_id, self._earlier_run_ids(context) + [r for r in started if r])
        self._feed(context, execution, position, window)

    def _carrier(self, run_id: str) -> str | None:
        """The run that carries a date this chunk acted on: its own, or the one adopted; None if refused."""
        event = self.events.get(run_id)
        if event is None:
            return run_id
        return event.run_id if event.kind is EventKind.ADOPTED else None

    def _record(self, context: Any, acted: int, stopped: str | None = None) -> None:
        events = {r: replace(e, message=e.message[:MESSAGE_CHARS]) for r, e in self.events.items()}
        record = ChunkRecord(self.chunk_index, acted, events, stopped[:MESSAGE_CHARS] if stopped else None)
        self._rest().keep_chunk(context["ti"].run_id, record.to_dict())
        if self.last_started is not None:  # once per task process: it then ends, defers or fails
            from backfill_controller.airflow_internals import keep_trigger_link

            keep_trigger_link(context["ti"], str(self.trigger_dag_id), self.last_started)

    def _defer_for_room(
        self, context: Any, execution: Execution, window: Window, feed: Feeding, open_runs: int, position: int
    ) -> None:
        if execution.past_deadline(time.time()):  # deferring now would resume at once, racing the scheduler
            return
        self.log.info(
            "window full (%d of %d runs open): waiting deferred until at most %d are open",
            open_runs,
            feed.window,
            feed.resume_at,
        )
        self._record(context, position)
        trigger = self._window_trigger(execution, window, feed, end_task=False)
        events = {run_id: e.to_dict() for run_id, e in self.events.items()}
        self.defer(trigger=trigger, method_name="feed_more", kwargs={"position": position, "events": events})

    @staticmethod
    def _window_trigger(
        execution: Execution, window: Window, feed: Feeding, *, end_task: bool
    ) -> WindowTrigger:
        return WindowTrigger(
            target_dag_id=execution.target_dag_id,
            run_ids=window.candidates,
            open_at_most=feed.resume_at,
            # A resumed task must not race the report of its deferred attempt (see the function).
            not_before=0.0 if end_task else time.time() + _min_deferral(),
            poll_interval=DEFERRED_FEED_INTERVAL,
            deadline=execution.deadline,
            end_task=end_task,
        )

    def _wait_until(self, context: Any, execution: Execution, window: Window, ready: Any, what: str) -> None:
        """Look every :data:`FEED_INTERVAL` seconds until ``ready()``; fail past the deadline."""
        while not ready():
            if execution.past_deadline(time.time()):
                raise AirflowFailException(_timeout_message(context, execution, window.candidates, what))
            time.sleep(FEED_INTERVAL)

    def _check_budget(self, context: Any, execution: Execution) -> None:
        """With ``max_failed_dates``, a chunk starts once every earlier date has finished, and only
        while fewer than that many have failed (the dates of this and later chunks are cancelled)."""
        budget = execution.max_failed_dates
        failed = failed_dates(dates_so_far(context, execution, upto=self.first_position))
        failed += execution.failed_before
        if budget is not None and failed >= budget:
            self._record(context, 0, stopped=f"max_failed_dates reached ({failed} dates failed)")
            raise AirflowSkipException(f"cancelled: {failed} dates failed and max_failed_dates is {budget}")

    def _act(self, context: Any, date: dict[str, Any], retry: bool) -> str | None:
        """Create or clear one date's run, as ``TriggerDagRunOperator`` would in its own task.

        Returns the run that now carries the date (None: Airflow refused it, recorded as such).
        """
        from airflow.sdk.exceptions import DagRunTriggerException

        self.trigger_run_id = date["trigger_run_id"]
        self.logical_date = date["logical_date"]
        self.run_after = date["run_after"]
        self.reset_dag_run = bool(date.get("reset_dag_run"))
        self.clear_task_ids = date.get("clear_task_ids")
        self.planned_end_date = date.get("planned_end_date")
        run_id = str(self.trigger_run_id)
        if (self.reset_dag_run or self.clear_task_ids is not None) and not self.may_clear:
            raise AirflowFailException(
                f"the backfill's record clears {run_id}, which this run's request never asks"
            )
        if retry and self._already_done():
            self.log.info("run %s was already triggered or cleared by this backfill", run_id)
            return run_id
        if self.reset_dag_run:
            if self.note:  # clearing keeps the run's old note: ours is added below it
                self._rest().append_note(self.trigger_dag_id, run_id, self.note)
            if self.clear_task_ids is not None:
                return self._clear_tasks(run_id)
        try:
            # Validates and raises DagRunTriggerException, as ever. Without the task instance it
            # keeps no "Triggered DAG" link per date (an XCom write each): _record keeps one.
            without_ti = {k: v for k, v in context.items() if k not in TASK_INSTANCE_KEYS}
            super().execute(cast("Any", without_ti))
        except DagRunTriggerException as request:
            return self._send(request)
        return run_id

    def _clear_tasks(self, run_id: str) -> str | None:
        from backfill_controller.client.rest import ApiError

        try:
            cleared = self._rest().clear_task_instances(self.trigger_dag_id, run_id, self.clear_task_ids)
        except ApiError as error:
            if error.status is None or error.status >= 500:
                raise
            self._refused(run_id, f"Airflow refused to clear its task instances: {error}")
            return None
        self.log.info("cleared %s of %s", ", ".join(cleared), run_id)
        return run_id

    def _send(self, request: Any) -> str | None:
        """Ask Airflow for the run; on a refusal, tell ours (an earlier try made it), another run
        with the same logical date (adopted), and a real refusal (recorded) apart."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

        from backfill_controller.airflow_internals import send_trigger

        run_id = str(request.dag_run_id)
        refused = send_trigger(request)
        if refused is None:
            self.log.info("%s run %s", "cleared" if request.reset_dag_run else "created", run_id)
            return run_id
        if refused.status == 409 and RTI.get_dr_count(dag_id=self.trigger_dag_id, run_ids=[run_id]) > 0:
            self.log.info(
                "run %s exists already (the front door or an earlier try of this chunk created it)", run_id
            )
            return run_id
        other = self._run_at(request.logical_date)
        if other is not None and other != run_id:
            why = f"{other} had this logical date first; its outcome is this date's"
            self.log.warning("date %s: %s", self.logical_date, why)
            self.events[run_id] = Event(EventKind.ADOPTED, why, other)
            return other
        if refused.status >= 500:  # Airflow's own error: the task's retry is the remedy
            raise RuntimeError(f"Airflow could not create {run_id}: {refused.message}")
        self._refused(run_id, f"Airflow refused the run (HTTP {refused.status}): {refused.message}")
        return None

    def _refused(self, run_id: str, message: str) -> None:
        self.log.error("date %s: %s", self.logical_date, message)
        self.events[run_id] = Event(EventKind.REFUSED, message)

    def _run_at(self, logical_date: Any) -> str | None:
        """The run_id of the target's run with this logical date, if there is one."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

        if logical_date is None:
            return None
        found = RTI.get_task_states(dag_id=self.trigger_dag_id, logical_dates=[logical_date])
        return next(iter(found), None)

    def _rest(self) -> Any:
        return api()

    def _already_done(self) -> bool:
        """True when an earlier try of this chunk already created, cleared or adopted the run.

        Makes retries safe (a worker killed after triggering, or a task whose success could not be
        recorded): a new run exists under our deterministic run_id; a cleared run is queued or
        running again, or has finished again since planning (its end_date changed). A date adopted
        or refused before is met again the same way, and recorded again.
        """
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

        from backfill_controller.airflow_internals import run_end_date

        run_id = str(self.trigger_run_id)
        if not self.reset_dag_run:
            return RTI.get_dr_count(dag_id=self.trigger_dag_id, run_ids=[run_id]) > 0
        state, ended = run_end_date(self.trigger_dag_id, run_id)
        end_date = parse_datetime(ended.isoformat()).isoformat() if ended else None
        planned = self.planned_end_date
        return state in OPEN_RUN or (planned is not None and end_date != planned)


class BackfillWaitSensor(BaseSensorOperator):
    """Wait until every run this controller run started or adopted has finished (deferred; ends
    in the triggerer). It starts once every chunk has finished, so the runs to wait for are known:
    a refused date or one never started has no run to wait for."""

    template_fields = ()
    ui_color = "#eef3fb"

    def __init__(self, *, deferrable: bool = True, **kwargs: Any):
        kwargs.setdefault("poke_interval", poll_interval())
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def poke(self, context: Any) -> PokeReturnValue | bool:
        execution = stored_execution(context)
        return execution is None or not open_run_ids(dates_so_far(context, execution))

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        execution = stored_execution(context)
        if execution is None:
            return None  # nothing planned (refused request, dry run): nothing to wait for
        if not starts_segments(work_of(context)):
            self.log.info("no further segment starts after these dates: the report waits for them")
            return None
        waiting = open_run_ids(dates_so_far(context, execution))
        if not waiting:
            return None
        paused_for = api().paused(context["ti"].run_id)["paused_seconds"]
        execution = with_pauses(execution, paused_for)
        if execution.past_deadline(time.time()):
            # Deferring now would resume at once, racing the scheduler: fail here instead.
            raise AirflowFailException(
                _timeout_message(context, execution, waiting, "timeout_minutes passed")
            )
        self.defer(
            trigger=BackfillProgressTrigger(
                target_dag_id=execution.target_dag_id,
                run_ids=waiting,
                poll_interval=self.poke_interval,
                deadline=execution.deadline,
                end_task=True,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        if event.get("timed_out"):
            execution = stored_execution(context)
            if execution is None:
                raise AirflowFailException("timed out: timeout_minutes passed")
            raise AirflowFailException(
                _timeout_message(context, execution, event.get("pending") or [], "timeout_minutes passed")
            )


def starts_segments(work: Work) -> bool:
    """Whether this controller run starts further segments once its own dates are done (a head
    run of more than one segment): its ``wait`` then waits for its runs; in any other run its
    ``report`` does, to report the moment the last run ends."""
    return work.segment == 0 and work.segments > 1


class BackfillReportOperator(BaseOperator):
    """Report the controller run's result (:func:`backfill_controller.worker.tasks.report_backfill`)
    the moment its last target run ends.

    In a run that starts no further segment (:func:`starts_segments`) this task, not ``wait``,
    waits for the runs still open: deferred in the triggerer
    (:class:`backfill_controller.worker.progress.BackfillProgressTrigger`) while they are far from
    their end, then from its worker, one look every :data:`TAIL_LOOK` seconds, for about the last
    :data:`backfill_controller.domain.plan.HOLD_SECONDS` of them (the pace so far says when). The
    result is then written within a look of the last run's end, with no hand-over through the
    triggerer and no new task process. A watch that lasts twice that long defers again. Past the
    backfill's ``timeout_minutes`` it stops waiting and reports the dates still open as unfinished.
    """

    ui_color = "#eefbf1"

    def execute(self, context: Any) -> Any:
        self._await_runs(context, candidates=None, handed_over=False)
        return self._report(context)

    def resume(self, context: Any, event: dict[str, Any]) -> Any:
        """Back from the triggerer: the runs have ended, the deadline passed, or the end is near."""
        if event.get("timed_out"):
            self._timed_out(context, event.get("pending") or [])
        elif event.get("hand_over"):
            self._await_runs(context, candidates=list(event.get("candidates") or []), handed_over=True)
        return self._report(context)

    def _report(self, context: Any) -> Any:
        from backfill_controller.worker.tasks import report_backfill

        return report_backfill(**context)

    def _await_runs(self, context: Any, candidates: list[str] | None, handed_over: bool) -> None:
        execution = stored_execution(context)
        if execution is None:
            return  # nothing planned (refused, dry run)
        if starts_segments(work_of(context)):
            self._await_last_segment(context, handed_over)
            return
        ti, dag_run = context["ti"], context["dag_run"]
        execution = with_pauses(execution, api().paused(ti.run_id)["paused_seconds"])
        finished = 0
        if candidates is None:
            dates = dates_so_far(context, execution)
            candidates = open_run_ids(dates)
            finished = sum(1 for d in acted_on(dates) if d.run_state in FINISHED_RUN)
        window = Window(execution.target_dag_id, candidates)
        started = getattr(dag_run, "start_date", None) or datetime.now(UTC)
        watched_since = time.time()
        while window.count():
            now = time.time()
            if execution.past_deadline(now):
                self._timed_out(context, window.candidates)
                return
            elapsed = now - started.timestamp()
            expected = handed_over or near_end(len(window.candidates), finished, elapsed)
            if not expected or now - watched_since > 2 * HOLD_SECONDS:
                # Handed over once already and still open: wait for the end deferred.
                since = started.timestamp()
                pace = None if handed_over else {"started_at": since, "finished_before": finished}
                self.defer(
                    trigger=BackfillProgressTrigger(
                        target_dag_id=execution.target_dag_id,
                        run_ids=window.candidates,
                        poll_interval=poll_interval(),
                        deadline=execution.deadline,
                        hand_over=pace,
                        not_before=time.time() + _min_deferral(),
                    ),
                    method_name="resume",
                )
            handed_over = True
            time.sleep(TAIL_LOOK)

    def _await_last_segment(self, context: Any, handed_over: bool) -> None:
        """A head run's report: ``wait`` waited for the head's own runs and each ``segment`` for its
        continuation run but the last, which this waits for: deferred
        (:class:`backfill_controller.worker.progress.SegmentEndTrigger`) until that run's own
        report runs, its last runs near their end, then from the worker until the report has ended.
        The head's own part of the result is built meanwhile
        (:func:`backfill_controller.worker.tasks.own_part`)."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

        from backfill_controller.worker.tasks import own_part

        ti, work = context["ti"], work_of(context)
        run_id = work.continuation_run_id(work.segments - 1)
        if RTI.get_dr_count(dag_id=ti.dag_id, run_ids=[run_id]) == 0:
            return  # never started (the failure budget ran out first)
        watched_since = time.time()
        while (state := report_state(ti.dag_id, run_id)) not in TASK_FINISHED:
            if (state != TASK_RUNNING and not handed_over) or time.time() - watched_since > 2 * HOLD_SECONDS:
                self.defer(
                    trigger=SegmentEndTrigger(
                        controller_dag_id=ti.dag_id,
                        run_id=run_id,
                        poll_interval=poll_interval(),
                        hand_over=not handed_over,
                        not_before=time.time() + _min_deferral(),
                    ),
                    method_name="resume",
                )
            handed_over = True
            own_part(context, work)  # once: the head's runs have ended, the last segment's nearly
            time.sleep(TAIL_LOOK)

    def _timed_out(self, context: Any, pending: Sequence[str]) -> None:
        execution = stored_execution(context)
        if execution is not None:
            self.log.error("%s", _timeout_message(context, execution, pending, "timeout_minutes passed"))


class BackfillSegmentOperator(TriggerDagRunOperator):
    """Run one further segment of a large backfill as a continuation controller run, and wait for it.

    Mapped over the segments after the first with ``max_active_tis_per_dagrun=1``, so segments run
    one after another. Before starting a segment it counts the failed dates of the segments so far
    against ``max_failed_dates``; over budget, the segment is skipped and its dates are cancelled.

    :param segment_index: which segment (1-based among continuations; 0 is the head run's own);
        the task instance's map index (plus one), which it is, prevails.

    The continuation run it starts is this DAG's, named after the head run and the segment, with
    the head's conf and the ``continues`` key (``head_run_id``, ``segment``, and ``failed_before``:
    the failed dates so far, which count against ``max_failed_dates``); its ``plan`` task gets its
    segment of the record from the api-server. A run id or conf given or mapped is ignored.
    """

    template_fields = ()
    ui_color = "#f3eefb"
    #: ``TriggerDagRunOperator``'s arguments the DAG gives: how to wait for the continuation run.
    WAITING = (
        "trigger_dag_id",
        "wait_for_completion",
        "deferrable",
        "poke_interval",
        "allowed_states",
        "failed_states",
    )

    def __init__(self, *, segment_index: int = 1, **kwargs: Any) -> None:
        kwargs, self.ignored = _without_work(kwargs, keep=self.WAITING)
        super().__init__(openlineage_inject_parent_info=False, **kwargs)
        self.segment_index = segment_index

    def execute(self, context: Any) -> None:
        from airflow.providers.standard.triggers.external_task import DagStateTrigger
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

        ti, work = context["ti"], work_of(context)
        if self.ignored:
            self.log.warning("ignored, read from the backfill's record instead: %s", ", ".join(self.ignored))
        if isinstance(ti.map_index, int) and ti.map_index >= 0:
            self.segment_index = ti.map_index + 1
        if work.segment != 0 or not 1 <= self.segment_index < work.segments:
            raise AirflowFailException(
                f"the backfill has no segment {self.segment_index} for this run to start"
            )
        failed = self._failed_so_far(context)
        execution = work.execution
        budget = execution.max_failed_dates if execution else None
        if budget is not None and failed >= budget:
            raise AirflowSkipException(f"cancelled: {failed} dates failed and max_failed_dates is {budget}")
        self.trigger_dag_id = ti.dag_id
        self.trigger_run_id = work.continuation_run_id(self.segment_index)
        conf = continuation_conf(context["dag_run"].conf or {}, work.head_run_id, self.segment_index)
        conf[CONTINUES_KEY] = {**conf[CONTINUES_KEY], "failed_before": failed}
        self.conf, self.reset_dag_run = conf, False
        run_id = str(self.trigger_run_id)
        last = self.segment_index == work.segments - 1
        if last:  # the head's report waits for the last segment, to report the moment it ends
            self.wait_for_completion = False
        if RTI.get_dr_count(dag_id=ti.dag_id, run_ids=[run_id]) == 0:
            super().execute(context)  # raises DagRunTriggerException (then waits deferred, but the last)
        if last:
            self.log.info(
                "segment %d already started as %s: the report waits for it", self.segment_index, run_id
            )
            return
        self.log.info("segment %d already started as %s: waiting for it", self.segment_index, run_id)
        self.defer(
            trigger=DagStateTrigger(
                dag_id=ti.dag_id,
                states=[DagRunState.SUCCESS, DagRunState.FAILED],
                run_ids=[run_id],
                poll_interval=self.poke_interval,
            ),
            method_name="execute_complete",
        )

    def _failed_so_far(self, context: Any) -> int:
        """Dates failed in this run and in the segments before ``segment_index`` (their reports,
        as the backfill's record keeps them)."""
        work = work_of(context)
        execution = work.execution
        failed = failed_dates(dates_so_far(context, execution)) if execution else 0
        if self.segment_index > 1:
            for k in range(1, self.segment_index):
                part = api().work(work.head_run_id, segment=k).get("report")
                failed += len(part["failed_dates"]) if part else 0
        return failed
