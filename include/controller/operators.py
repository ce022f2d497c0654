"""The controller's operators: a chunk of ``TriggerDagRunOperator`` work, and a sensor for the result.

``BackfillTriggerOperator`` is mapped over the chunks of the dates to act on, and its task
instances run one after another (``max_active_tis_per_dagrun=1``). Each starts its dates in order
through ``TriggerDagRunOperator``'s own path (a new run, or ``reset_dag_run`` to clear and re-run
an existing one), each as soon as the backfill's window has room (:func:`include.backfill.plan.room`).
How it waits while the window is full depends on the target (:func:`include.backfill.plan.feeding`):
when the target's own ``max_active_runs`` already holds the backfill's runs back, the window also
holds queued runs and the task waits deferred (:class:`include.controller.progress.WindowTrigger`,
no executor slot); otherwise it waits in its worker, one ``GetDRCount`` call every half second.
With a failure budget (``max_failed_dates``), a chunk starts once every earlier date has
finished, and only while the budget lasts.

``BackfillWaitSensor`` (one per controller run) waits, deferred in the triggerer, until every run
has finished, and then ends itself from the triggerer.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseOperator, BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.utils.state import DagRunState

from include.backfill.plan import Feeding, min_deferral_seconds, room
from include.backfill.report import failed_count
from include.backfill.request import parse_datetime
from include.backfill.rights import may_clear
from include.backfill.segments import continuation_run_id
from include.backfill.settings import poll_interval, timeout_minutes
from include.controller.progress import (
    OPEN,
    BackfillProgressTrigger,
    Watch,
    Window,
    WindowTrigger,
    observe,
    unfinished,
    why_stuck,
)

PLAN_TASK_ID = "plan"
#: Seconds between looks at the window while a chunk waits for room in its worker: one cheap
#: call, so short.
FEED_INTERVAL = 0.5
#: The same while it waits deferred: the queued reserve covers a slower look, and the triggerer
#: and the API server have less to do.
DEFERRED_FEED_INTERVAL = 1.0
NO_ROOM = "the window never had room for the next date"


def _min_deferral() -> float:
    """:func:`include.backfill.plan.min_deferral_seconds` for this worker's configuration."""
    from airflow.sdk.configuration import conf

    return min_deferral_seconds(conf.getfloat("workers", "min_heartbeat_interval", fallback=5.0))


def _gate(context: Any) -> dict[str, Any] | None:
    return context["ti"].xcom_pull(task_ids=PLAN_TASK_ID, key="gate")


def _watch(context: Any, gate: dict[str, Any], upto: int | None = None) -> Watch:
    ti = context["ti"]
    run_ids = ti.xcom_pull(task_ids=PLAN_TASK_ID, key="run_ids") or []
    return Watch(ti.dag_id, ti.run_id, gate["target_dag_id"], run_ids[:upto], gate["chunk_size"])


def _past_deadline(gate: dict[str, Any]) -> bool:
    return bool(gate.get("deadline")) and time.time() > gate["deadline"]


def _timeout_message(context: Any, gate: dict[str, Any], stuck_run_ids: set[str], what: str) -> str:
    """Which dates did not finish in time, and the likely reason."""
    plans = context["ti"].xcom_pull(task_ids=PLAN_TASK_ID, key="plans") or []
    dates = {p["run_id"]: p["logical_date"] for p in plans}
    stuck = sorted(dates.get(r, r) for r in stuck_run_ids)
    shown = ", ".join(stuck[:20]) + (f" and {len(stuck) - 20} more" if len(stuck) > 20 else "")
    return (
        f"timed out ({what}): {len(stuck)} date(s) of {gate['target_dag_id']} did not finish: {shown}; "
        f"{why_stuck(gate['target_dag_id'])}"
    )


class BackfillPlanOperator(BaseOperator):
    """Plan the backfill (:func:`include.controller.tasks.plan_backfill`); wait deferred while an
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

        from include.controller.tasks import OverlapWait, plan_backfill

        try:
            return plan_backfill(**context)
        except OverlapWait as wait:
            since = waiting_since or time.time()
            minutes = (context["dag_run"].conf or {}).get("timeout_minutes") or timeout_minutes()
            if time.time() - since > 60 * minutes:
                message = f"{wait}; waited timeout_minutes for it; wait longer or cancel it"
                context["ti"].xcom_push(key="error", value=message)
                raise AirflowFailException(message) from None
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

    :param chunk_index: which chunk (0-based, in run order); also the map index.
    :param first_position: index, among the controller run's acting dates, of the chunk's first date.
    :param dates: one dict per date: ``trigger_run_id``, ``logical_date``, ``run_after``,
        ``reset_dag_run``, ``clear_task_ids`` (re-run only these task instances of the existing run,
        ``task_id`` or ``[task_id, map_index]``, through the REST API instead of clearing the whole
        run) and ``planned_end_date`` (end_date of the existing run when planned, to detect a done
        clear on a retry).
    :param dates_label: shown as the map index in the UI (first and last date).
    All other parameters are ``TriggerDagRunOperator``'s (``trigger_dag_id``, ``note``); the conf
    is the request's, read from the plan.
    Nothing is templated: every value comes from the plan, and user text (conf, reason) must never
    be rendered as a Jinja template.
    """

    template_fields = ()
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        chunk_index: int = 0,
        first_position: int = 0,
        dates: list[dict[str, Any]] | None = None,
        dates_label: str = "",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("openlineage_inject_parent_info", False)
        super().__init__(**kwargs)
        self.chunk_index = chunk_index
        self.first_position = first_position
        self.dates = dates or []
        self.dates_label = dates_label
        self.planned_end_date: str | None = None
        self.clear_task_ids: list[Any] | None = None
        self.may_clear = False
        self._api: Any = None

    def execute(self, context: Any) -> None:
        gate = self._gate(context)
        earlier = _watch(context, gate, upto=self.first_position)
        window = Window(gate["target_dag_id"], list(earlier.run_ids))
        if gate.get("max_failed_dates") is not None:
            finished = "the earlier dates never finished"
            self._wait_until(context, gate, window, lambda: window.count() == 0, finished)
            self._check_budget(gate, earlier)
        self._feed(context, gate, 0, window)

    def feed_more(self, context: Any, event: dict[str, Any], position: int) -> None:
        """Resumed from waiting deferred for room: start the chunk's dates from ``position``."""
        gate = self._gate(context)
        if event.get("timed_out"):
            raise AirflowFailException(
                _timeout_message(context, gate, set(event.get("pending") or []), NO_ROOM)
            )
        self._feed(context, gate, position, Window(gate["target_dag_id"], event["candidates"]))

    def _gate(self, context: Any) -> dict[str, Any]:
        """The plan's facts, held against this controller run's own conf.

        The plan reaches this task through XComs, which anyone who may write the controller's
        XComs can rewrite through the REST API; the run's conf, which the requester was
        authorized for, nobody can. So the target, the conf given to each run, and whether
        clearing is allowed at all come from the conf.
        """
        gate = _gate(context)
        if gate is None:
            raise AirflowFailException("the plan task stored no plan; see its log")
        asked = context["dag_run"].conf or {}
        if not gate["target_dag_id"] == self.trigger_dag_id == asked.get("dag_id"):
            raise AirflowFailException("the stored plan names another DAG than this run's request")
        self.conf = dict(asked.get("conf") or {})
        self.may_clear = may_clear(asked)
        return gate

    def _feed(self, context: Any, gate: dict[str, Any], position: int, window: Window) -> None:
        """Start the chunk's dates from ``position``, each once the window has room.

        While the window is full the task waits in its worker, or deferred in the triggerer when
        Airflow itself holds the backfill's extra runs queued (:func:`include.backfill.plan.feeding`).
        """
        feed = Feeding(**gate["feeding"])
        open_runs = window.count()
        self.log.info(
            "%d of %d runs open; next: date %d of %d in this chunk",
            open_runs,
            feed.window,
            position + 1,
            len(self.dates),
        )
        retry = context["ti"].try_number > 1
        for index in range(position, len(self.dates)):
            if not room(open_runs, feed.window):
                if feed.deferred:
                    self._defer_for_room(gate, window, feed, open_runs, index)
                self._wait_until(
                    context, gate, window, lambda: room(window.count(), feed.window) > 0, NO_ROOM
                )
                open_runs = window.count()
            self._act(context, self.dates[index], retry)
            window.add(str(self.trigger_run_id))
            open_runs += 1
        context["ti"].xcom_push(key="trigger_run_id", value=[d["trigger_run_id"] for d in self.dates])
        last_chunk = self.first_position + len(self.dates) >= gate["total"]
        if feed.deferred and not last_chunk and open_runs > feed.resume_at and not _past_deadline(gate):
            # Hand over to the next chunk once a burst fits: the task ends from the triggerer, so
            # the next chunk's task does not start only to find the window full.
            self.log.info(
                "all dates started; the next chunk starts once at most %d runs are open", feed.resume_at
            )
            self.defer(trigger=self._window_trigger(gate, window, feed, end_task=True), method_name="execute")

    def _defer_for_room(
        self, gate: dict[str, Any], window: Window, feed: Feeding, open_runs: int, position: int
    ) -> None:
        if _past_deadline(gate):  # deferring now would resume at once, racing the scheduler
            return
        self.log.info(
            "window full (%d of %d runs open): waiting deferred until at most %d are open",
            open_runs,
            feed.window,
            feed.resume_at,
        )
        trigger = self._window_trigger(gate, window, feed, end_task=False)
        self.defer(trigger=trigger, method_name="feed_more", kwargs={"position": position})

    @staticmethod
    def _window_trigger(
        gate: dict[str, Any], window: Window, feed: Feeding, *, end_task: bool
    ) -> WindowTrigger:
        return WindowTrigger(
            target_dag_id=gate["target_dag_id"],
            run_ids=window.candidates,
            open_at_most=feed.resume_at,
            # A resumed task must not race the report of its deferred attempt (see the function).
            not_before=0.0 if end_task else time.time() + _min_deferral(),
            poll_interval=DEFERRED_FEED_INTERVAL,
            deadline=gate.get("deadline"),
            end_task=end_task,
        )

    def _wait_until(self, context: Any, gate: dict[str, Any], window: Window, ready: Any, what: str) -> None:
        """Look every :data:`FEED_INTERVAL` seconds until ``ready()``; fail past the deadline."""
        while not ready():
            if _past_deadline(gate):
                raise AirflowFailException(_timeout_message(context, gate, set(window.candidates), what))
            time.sleep(FEED_INTERVAL)

    def _check_budget(self, gate: dict[str, Any], earlier: Watch) -> None:
        """With ``max_failed_dates``, a chunk starts once every earlier date has finished, and only
        while fewer than that many have failed (the dates of this and later chunks are cancelled)."""
        budget = gate["max_failed_dates"]
        failed = failed_count(observe(earlier)) + gate.get("failed_before", 0)
        if failed >= budget:
            raise AirflowSkipException(f"cancelled: {failed} dates failed and max_failed_dates is {budget}")

    def _act(self, context: Any, date: dict[str, Any], retry: bool) -> None:
        """Create or clear one date's run, as ``TriggerDagRunOperator`` would in its own task."""
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
                f"the stored plan clears {run_id}, which this run's request never asks"
            )
        if retry and self._already_done():
            self.log.info("run %s was already triggered or cleared by this backfill", run_id)
            return
        if self.reset_dag_run:
            if self.note:  # clearing keeps the run's old note: set ours first
                self._rest().set_note(self.trigger_dag_id, run_id, self.note)
            if self.clear_task_ids is not None:
                cleared = self._rest().clear_task_instances(self.trigger_dag_id, run_id, self.clear_task_ids)
                self.log.info("cleared %s of %s", ", ".join(cleared), run_id)
                return
        try:
            super().execute(context)  # validates and raises DagRunTriggerException, as ever
        except DagRunTriggerException as request:
            self._send(request)

    def _send(self, request: Any) -> None:
        """What the task runner does with ``DagRunTriggerException``: ask the API server for the run."""
        from airflow.sdk.execution_time.comms import ErrorResponse, TriggerDagRun
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        answer = SUPERVISOR_COMMS.send(
            TriggerDagRun(
                dag_id=request.trigger_dag_id,
                run_id=request.dag_run_id,
                logical_date=request.logical_date,
                run_after=request.run_after,
                conf=request.conf,
                reset_dag_run=request.reset_dag_run,
                note=request.note,
            )
        )
        if isinstance(answer, ErrorResponse):
            # Only a new run can be refused as existing (a reset clears it instead): an earlier
            # try of this chunk created it under our deterministic run_id.
            self.log.info("run %s exists already: %s", request.dag_run_id, answer.error)
        else:
            self.log.info("%s run %s", "cleared" if request.reset_dag_run else "created", request.dag_run_id)

    def _rest(self) -> Any:
        if self._api is None:
            from include.controller.api import AirflowApi

            self._api = AirflowApi.from_connection()
        return self._api

    def _already_done(self) -> bool:
        """True when an earlier try of this chunk already created or cleared the run.

        Makes retries safe (a worker killed after triggering, or a task whose success could not be
        recorded): a new run exists under our deterministic run_id; a cleared run is queued or
        running again, or has finished again since planning (its end_date changed).
        """
        from airflow.sdk.execution_time.comms import _fetch_dag_run
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

        run_id = str(self.trigger_run_id)
        if not self.reset_dag_run:
            return RTI.get_dr_count(dag_id=self.trigger_dag_id, run_ids=[run_id]) > 0
        run = _fetch_dag_run(dag_id=self.trigger_dag_id, run_id=run_id)
        state = str(getattr(run.state, "value", run.state))
        end_date = parse_datetime(run.end_date.isoformat()).isoformat() if run.end_date else None
        planned = self.planned_end_date
        return state in OPEN or (planned is not None and end_date != planned)


class BackfillWaitSensor(BaseSensorOperator):
    """Wait until every run of this controller run has finished (deferred; ends in the triggerer)."""

    template_fields = ()
    ui_color = "#eef3fb"

    def __init__(self, *, deferrable: bool = True, **kwargs: Any):
        kwargs.setdefault("poke_interval", poll_interval())
        super().__init__(**kwargs)
        self.deferrable = deferrable

    def poke(self, context: Any) -> PokeReturnValue | bool:
        gate = _gate(context)
        return gate is None or not unfinished(_watch(context, gate))

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        gate = _gate(context)
        if gate is None:
            return None  # nothing planned (refused request, dry run): nothing to wait for
        watch = _watch(context, gate)
        waiting = unfinished(watch)
        if not waiting:
            return None
        if _past_deadline(gate):
            # Deferring now would resume at once, racing the scheduler: fail here instead.
            raise AirflowFailException(_timeout_message(context, gate, waiting, "timeout_minutes passed"))
        self.defer(
            trigger=BackfillProgressTrigger(
                **watch.only(waiting).to_kwargs(),
                poll_interval=self.poke_interval,
                deadline=gate.get("deadline"),
                end_task=True,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> None:
        if event.get("timed_out"):
            gate = _gate(context) or {}
            raise AirflowFailException(
                _timeout_message(context, gate, set(event.get("pending") or []), "timeout_minutes passed")
            )


class BackfillSegmentOperator(TriggerDagRunOperator):
    """Run one further segment of a large backfill as a continuation controller run, and wait for it.

    Mapped over the segments after the first with ``max_active_tis_per_dagrun=1``, so segments run
    one after another. Before starting a segment it counts the failed dates of the segments so far
    against ``max_failed_dates``; over budget, the segment is skipped and its dates are cancelled.

    :param segment_index: which segment (1-based among continuations; 0 is the head run's own).
    """

    template_fields = ()
    ui_color = "#f3eefb"

    def __init__(self, *, segment_index: int, **kwargs: Any) -> None:
        kwargs.setdefault("openlineage_inject_parent_info", False)
        super().__init__(**kwargs)
        self.segment_index = segment_index

    def execute(self, context: Any) -> None:
        from airflow.providers.standard.triggers.external_task import DagStateTrigger
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance as RTI

        ti = context["ti"]
        failed = self._failed_so_far(context)
        budget = (_gate(context) or {}).get("max_failed_dates")
        if budget is not None and failed >= budget:
            raise AirflowSkipException(f"cancelled: {failed} dates failed and max_failed_dates is {budget}")
        self.conf = {**(self.conf or {})}
        self.conf["continues"] = {**self.conf["continues"], "failed_before": failed}
        run_id = str(self.trigger_run_id)
        if RTI.get_dr_count(dag_id=ti.dag_id, run_ids=[run_id]) == 0:
            super().execute(context)  # raises DagRunTriggerException, then waits deferred
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
        ti = context["ti"]
        gate = _gate(context)
        failed = failed_count(observe(_watch(context, gate))) if gate else 0
        for k in range(1, self.segment_index):
            part = ti.xcom_pull(
                task_ids="report", run_id=continuation_run_id(ti.run_id, k), key="segment_report"
            )
            failed += len(part["failed_dates"]) if part else 0
        return failed
