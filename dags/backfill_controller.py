"""
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
3. **wait** (a deferrable sensor) waits in the triggerer until every run has finished.
4. **report** returns the result as XCom `return_value` (per-date summary) and fails unless every
   date acted on ended `success`.

Set **dry_run** to see the plan without changing anything.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Param

from include.backfill.contract import form_params
from include.backfill.settings import Limits, poll_interval
from include.controller.operators import (
    BackfillPlanOperator,
    BackfillSegmentOperator,
    BackfillTriggerOperator,
    BackfillWaitSensor,
)
from include.controller.tasks import list_segments, report_backfill

LIMITS = Limits.from_config()

with DAG(
    dag_id="backfill_controller",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=32,  # a large backfill holds two: the head run and its running segment
    doc_md=__doc__,
    tags=["backfill", "ops"],
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=10)},
    params={name: Param(**spec) for name, spec in form_params(LIMITS).items()},
) as dag:
    # Planning is a few REST calls; a hung call must not hold a worker (the overlap wait is deferred).
    plan = BackfillPlanOperator(task_id="plan", retries=1, execution_timeout=pendulum.duration(minutes=10))

    # One task instance per chunk, one at a time (a deferred one counts): a second one started
    # early cost a second executor slot all along. Ahead of the target's own tasks for a slot: a
    # chunk resumed from waiting deferred must refill the window before its queued runs run out.
    trigger = BackfillTriggerOperator.partial(
        task_id="trigger",
        max_active_tis_per_dagrun=1,
        priority_weight=1000,
        weight_rule="absolute",
        map_index_template="{{ task.dates_label }}",
        retries=1,
    ).expand_kwargs(plan.output)

    wait = BackfillWaitSensor(task_id="wait", trigger_rule="all_done", timeout=7 * 24 * 3600)

    # Large requests: further segments of at most segment_size dates run one after
    # another as continuation runs of this DAG (see include/backfill/segments.py).
    segments = PythonOperator(task_id="segments", python_callable=list_segments)
    segment = BackfillSegmentOperator.partial(
        task_id="segment",
        trigger_dag_id="backfill_controller",
        wait_for_completion=True,
        deferrable=True,
        poke_interval=int(poll_interval()),
        allowed_states=["success", "failed"],
        failed_states=[],
        max_active_tis_per_dagrun=1,
        trigger_rule="all_done",
        map_index_template="segment {{ task.segment_index }}",
    ).expand_kwargs(segments.output)

    report = PythonOperator(
        task_id="report", python_callable=report_backfill, trigger_rule="all_done", retries=0
    )

    plan >> [trigger, segments]
    trigger >> wait >> segment >> report
