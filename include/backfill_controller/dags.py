"""The product's two DAGs, built by functions that a DAG file in the deployment's DAGs folder calls.

The whole file a deployment adds to its DAGs folder (the repository's own ``dags/backfills.py``)::

    from backfill_controller.dags import catchup_dag, controller_dag

    backfill_controller, backfill_catchup = controller_dag(), catchup_dag()

Nothing here runs at import: each function reads the deployment's settings when the DAG file is
parsed, as Airflow's own DAG files do.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from backfill_controller.contract import CATCHUP_DAG_ID, CONTROLLER_DAG_ID, Task
from backfill_controller.domain.keys import form_params
from backfill_controller.domain.settings import CATCHUP_SCHEDULE, Limits, poll_interval

START = pendulum.datetime(2024, 1, 1, tz="UTC")

CONTROLLER_DOC = """
# Backfill Controller

Backfill any DAG of this Airflow: a window of dates (`start_date`..`end_date`, inclusive, exactly
the dates `airflow backfill create` would make) or an explicit list of `dates`.

1. **plan** validates the request against the live target (exists, unpaused, dates fit its
   schedule, conf fits its Params) and decides per date: *triggered* (no run yet), *cleared*
   (existing run re-run under its own run_id, per `reprocess`) or *skipped* (why is reported).
   A bad request fails here and nothing is created or changed.
2. **trigger** (one mapped task instance per chunk of dates, chunk after chunk) creates or
   clears the target runs in date order, keeping at most `max_active_runs` of them running (a
   sliding window; when the target's own `max_active_runs` is at most the request's, a reserve of
   queued runs waits behind the running ones); once `max_failed_dates` dates have failed no new
   chunk starts.
3. **wait** (a deferrable sensor) waits in the triggerer until every run has finished, where
   further **segment**s of a large request start after them; otherwise **report** waits itself,
   so the result is written the moment the last run ends.
4. **report** returns the result as XCom `return_value` (per-date summary) and fails unless every
   date acted on ended `success`.

Set **dry_run** to see the plan without changing anything.
"""

CATCHUP_DOC = """
# Backfill catch-up

Keeps the DAGs listed in the deployment's catch-up file (`[backfill_controller] catchup_config`,
by default `include/catchup.yaml` beside the DAGs folder) whole: on every run, for each DAG, it
finds the logical dates of its lookback window with no run (or, with `reprocess: failed`, a failed
run) and hands at most `max_dates_per_run` of them, oldest first, to `backfill_controller` with
the reason *scheduled catch-up*. No gaps, no controller run.

Created **paused**: unpause it to turn scheduled catch-up on. A target that is paused, denied by
the deployment, or already being backfilled is skipped and said so in the log.
"""


def controller_dag() -> DAG:
    """The ``backfill_controller`` DAG: plan, trigger (mapped per chunk), wait, segments, report."""
    from backfill_controller.worker.operators import (
        BackfillPlanOperator,
        BackfillReportOperator,
        BackfillSegmentOperator,
        BackfillTriggerOperator,
        BackfillWaitSensor,
    )
    from backfill_controller.worker.tasks import list_segments

    limits = Limits.from_config()
    with DAG(
        dag_id=CONTROLLER_DAG_ID,
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=32,  # a large backfill holds two: the head run and its running segment
        doc_md=CONTROLLER_DOC,
        tags=["backfill", "ops"],
        default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=10)},
        params={name: Param(**spec) for name, spec in form_params(limits).items()},
    ) as dag:
        # Planning is a few REST calls; a hung call must not hold a worker (the overlap wait is deferred).
        plan = BackfillPlanOperator(
            task_id=Task.PLAN, retries=1, execution_timeout=pendulum.duration(minutes=10)
        )

        # One task instance per chunk, one at a time (a deferred one counts): a second one started
        # early cost a second executor slot all along. Ahead of the target's own tasks for a slot: a
        # chunk resumed from waiting deferred must refill the window before its queued runs run out.
        trigger = BackfillTriggerOperator.partial(
            task_id=Task.TRIGGER,
            max_active_tis_per_dagrun=1,
            priority_weight=1000,
            weight_rule="absolute",
            map_index_template="{{ task.dates_label }}",
            retries=1,
        ).expand_kwargs(plan.output)

        wait = BackfillWaitSensor(task_id=Task.WAIT, trigger_rule="all_done", timeout=7 * 24 * 3600)

        # Large requests: further segments of at most segment_size dates run one after
        # another as continuation runs of this DAG (see backfill_controller.domain.segments).
        segments = PythonOperator(task_id=Task.SEGMENTS, python_callable=list_segments)
        segment = BackfillSegmentOperator.partial(
            task_id=Task.SEGMENT,
            trigger_dag_id=CONTROLLER_DAG_ID,
            wait_for_completion=True,
            deferrable=True,
            poke_interval=int(poll_interval()),
            allowed_states=["success", "failed"],
            failed_states=[],
            max_active_tis_per_dagrun=1,
            trigger_rule="all_done",
            map_index_template="segment {{ task.segment_index }}",
        ).expand_kwargs(segments.output)

        # In the last segment the report waits for the last runs itself, to write the result the
        # moment they end (see BackfillReportOperator); a worker lost meanwhile retries it.
        report = BackfillReportOperator(task_id=Task.REPORT, trigger_rule="all_done", retries=1)

        plan >> [trigger, segments]
        trigger >> wait >> segment >> report
    return dag


def catchup_dag() -> DAG:
    """The ``backfill_catchup`` DAG (created paused): hands each configured DAG's gaps to the controller."""
    from backfill_controller.worker.catchup import catch_up, list_entries

    with DAG(
        dag_id=CATCHUP_DAG_ID,
        schedule=CATCHUP_SCHEDULE.value(),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,
        doc_md=CATCHUP_DOC,
        tags=["backfill", "ops"],
        default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
    ) as dag:
        entries = PythonOperator(task_id="entries", python_callable=list_entries)
        PythonOperator.partial(
            task_id="catch_up",
            python_callable=catch_up,
            map_index_template="{{ task.op_kwargs['dag_id'] }}",
        ).expand(op_kwargs=entries.output)
    return dag
