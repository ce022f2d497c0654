"""The controller's operators: a gated ``TriggerDagRunOperator`` and a sensor that reports every run.

``BackfillTriggerOperator`` is mapped over the dates to act on (one task instance triggers or
clears one run, as ``TriggerDagRunOperator`` does). Before it triggers, a date waits for its
chunk's turn: chunk *k* starts when the chunks that must finish before it have finished (see
:func:`include.backfill.plan.must_be_finished_before`) and the failure budget is not spent. It
waits deferred, in the triggerer, so waiting costs no worker slot.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from include.backfill.plan import chunk_bounds, must_be_finished_before
from include.backfill.report import PENDING, failed_count
from include.backfill.request import parse_datetime
from include.backfill.segments import continuation_run_id
from include.backfill.settings import poll_interval
from include.controller.progress import BackfillProgressTrigger, Watch, observe, why_stuck

PLAN_TASK_ID = "plan"


def _watch(context: Any, target_dag_id: str, indexes: range) -> Watch:
    ti = context["ti"]
    run_ids = ti.xcom_pull(task_ids=PLAN_TASK_ID, key="run_ids") or []
    return Watch(ti.dag_id, ti.run_id, target_dag_id, [(i, run_ids[i]) for i in indexes])


def _gate(context: Any) -> dict[str, Any]:
    return context["ti"].xcom_pull(task_ids=PLAN_TASK_ID, key="gate")


def _timeout_message(context: Any, outcomes: dict[str, str], what: str) -> str:
    """Which dates did not finish in time, and the likely reason."""
    gate = _gate(context)
    plans = context["ti"].xcom_pull(task_ids=PLAN_TASK_ID, key="plans") or []
    dates = {p["run_id"]: p["logical_date"] for p in plans}
    stuck = [dates.get(r, r) for r, o in outcomes.items() if o == PENDING]
    shown = ", ".join(stuck[:20]) + (f" and {len(stuck) - 20} more" if len(stuck) > 20 else "")
    return (
        f"timed out ({what}): {len(stuck)} date(s) of {gate['target_dag_id']} did not finish: {shown}; "
        f"{why_stuck(gate['target_dag_id'])}"
    )


class BackfillTriggerOperator(TriggerDagRunOperator):
    """Trigger (or clear and re-run) one target run once its chunk may start.

    :param chunk_index: which chunk this date belongs to (0-based, in run order).
    :param planned_end_date: end_date of the existing run when planned (to detect a done clear).
    :param clear_task_ids: re-run only these task instances of the existing run (``task_id`` or
        ``[task_id, map_index]``) through the REST API, instead of clearing the whole run.
    :param note: run note for the target run; set on cleared runs too.
    All other parameters are ``TriggerDagRunOperator``'s. Nothing is templated: every value comes
    from the plan, and user text (conf, reason) must never be rendered as a Jinja template.
    """

    template_fields = ()
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        chunk_index: int = 0,
        planned_end_date: str | None = None,
        clear_task_ids: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("openlineage_inject_parent_info", False)
        super().__init__(**kwargs)
        self.chunk_index = chunk_index
        self.planned_end_date = planned_end_date
        self.clear_task_ids = clear_task_ids

    def _already_done(self) -> bool:
        """True when an earlier try of this task already created or cleared the run.

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
        return state in ("queued", "running") or (planned is not None and end_date != planned)

    def execute(self, context: Any) -> None:
        self._wait_for_turn(context)
        if self._already_done():
            self.log.info("run %s was already triggered or cleared by this backfill", self.trigger_run_id)
            context["ti"].xcom_push(key="trigger_run_id", value=self.trigger_run_id)
            return
        if self.reset_dag_run:
            from include.controller.api import AirflowApi

            api = AirflowApi.from_connection()
            run_id = str(self.trigger_run_id)
            if self.note:  # clearing keeps the run's old note: set ours first
                api.set_note(self.trigger_dag_id, run_id, self.note)
            if self.clear_task_ids is not None:
                cleared = api.clear_task_instances(self.trigger_dag_id, run_id, self.clear_task_ids)
                self.log.info("cleared %s of %s", ", ".join(cleared), run_id)
                context["ti"].xcom_push(key="trigger_run_id", value=run_id)
                return
        # Raises DagRunTriggerException; the task runner then creates the run, or clears it.
        super().execute(context)

    def execute_after_turn(self, context: Any, event: dict[str, Any] | None = None) -> None:
        if event and event.get("timed_out"):
            raise AirflowFailException(
                _timeout_message(context, event["outcomes"], "this date's turn never came")
            )
        self.execute(context)

    def _wait_for_turn(self, context: Any) -> None:
        gate = _gate(context)
        if self.chunk_index == 0 and not gate.get("failed_before"):
            return
        size = gate["chunk_size"]
        earlier = _watch(context, self.trigger_dag_id, range(self.chunk_index * size))
        outcomes = observe(earlier)
        budget = gate.get("max_failed_dates")
        failed = failed_count(outcomes) + gate.get("failed_before", 0)
        if budget is not None and failed >= budget:
            raise AirflowSkipException(f"cancelled: {failed} dates failed and max_failed_dates is {budget}")
        need = must_be_finished_before(self.chunk_index, gate["chunks_in_flight"], size)
        waiting = {r for _, r in earlier.entries[:need] if outcomes[r] == PENDING}
        if waiting:
            self.log.info("chunk %d waits for %d earlier runs to finish", self.chunk_index, len(waiting))
            self.defer(
                trigger=BackfillProgressTrigger(
                    **earlier.only(waiting).to_kwargs(),
                    poll_interval=poll_interval(),
                    deadline=gate.get("deadline"),
                ),
                method_name="execute_after_turn",
            )


class BackfillChunkSensor(BaseSensorOperator):
    """Wait until every run of one chunk has finished; returns ``{run_id: outcome}``.

    :param chunk_index: the chunk to watch.
    :param deferrable: wait in the triggerer (default) instead of holding a worker slot.
    """

    template_fields = ()
    ui_color = "#eef3fb"

    def __init__(self, *, chunk_index: int, deferrable: bool = True, **kwargs: Any):
        kwargs.setdefault("poke_interval", poll_interval())
        super().__init__(**kwargs)
        self.chunk_index = chunk_index
        self.deferrable = deferrable

    def _chunk(self, context: Any) -> Watch:
        gate = _gate(context)
        return _watch(
            context, gate["target_dag_id"], chunk_bounds(self.chunk_index, gate["chunk_size"], gate["total"])
        )

    def poke(self, context: Any) -> PokeReturnValue:
        outcomes = observe(self._chunk(context))
        return PokeReturnValue(is_done=PENDING not in outcomes.values(), xcom_value=outcomes)

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        watch = self._chunk(context)
        outcomes = observe(watch)
        waiting = {r for r, o in outcomes.items() if o == PENDING}
        if not waiting:
            return outcomes
        self.defer(
            trigger=BackfillProgressTrigger(
                **watch.only(waiting).to_kwargs(),
                poll_interval=self.poke_interval,
                deadline=_gate(context).get("deadline"),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, str]:
        if event.get("timed_out"):
            raise AirflowFailException(_timeout_message(context, event["outcomes"], "timeout_minutes passed"))
        outcomes = observe(self._chunk(context))
        self.log.info("chunk %d finished: %s", self.chunk_index, outcomes)
        return outcomes


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
        budget = _gate(context).get("max_failed_dates")
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
                states=["success", "failed"],
                run_ids=[run_id],
                poll_interval=self.poke_interval,
            ),
            method_name="execute_complete",
        )

    def _failed_so_far(self, context: Any) -> int:
        ti = context["ti"]
        gate = _gate(context)
        head = _watch(context, gate["target_dag_id"], range(gate["total"]))
        failed = failed_count(observe(head))
        for k in range(1, self.segment_index):
            part = ti.xcom_pull(
                task_ids="report", run_id=continuation_run_id(ti.run_id, k), key="segment_report"
            )
            failed += len(part["failed_dates"]) if part else 0
        return failed
