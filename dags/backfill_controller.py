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

from include.backfill.request import DATE_PATTERN
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
    params={
        "dag_id": Param(
            type="string",
            minLength=1,
            pattern=r"^[A-Za-z0-9_.\-]+$",
            title="Target DAG",
            description="dag_id of the DAG to backfill.",
            section="What",
        ),
        "start_date": Param(
            None,
            type=["null", "string"],
            pattern=DATE_PATTERN,
            title="Start date",
            description="First logical date, inclusive. YYYY-MM-DD or ISO-8601; naive means UTC.",
            section="What",
        ),
        "end_date": Param(
            None,
            type=["null", "string"],
            pattern=DATE_PATTERN,
            title="End date",
            description="Last logical date, inclusive.",
            section="What",
        ),
        "dates": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": DATE_PATTERN},
            minItems=1,
            maxItems=LIMITS.max_dates_per_request,
            title="Explicit dates",
            description="Instead of a window: the logical dates to run "
            "(for DAGs with schedule=None, any datetimes).",
            section="What",
        ),
        "reprocess": Param(
            "missing",
            type="string",
            enum=["missing", "failed", "all", "none", "completed"],
            values_display={
                "missing": "missing: only dates with no run",
                "failed": "failed: also dates whose run failed",
                "all": "all: every date",
                "none": "none (native name of missing)",
                "completed": "completed (native name of all)",
            },
            title="Re-process",
            description="Which existing runs to re-run. Queued or running runs are never touched.",
            section="What",
        ),
        "conf": Param(
            {},
            type="object",
            title="Run conf",
            description="Passed to every target run; validated against the target's Params.",
            section="What",
        ),
        "reason": Param(
            "",
            type="string",
            maxLength=1000,
            title="Reason",
            description="Recorded as the note of every run created or cleared, and in the report.",
            section="What",
        ),
        "task_regex": Param(
            None,
            type=["null", "string"],
            maxLength=1000,
            title="Only tasks matching",
            description="Re-run only the tasks whose task_id matches this Python regex (re.search), "
            "like Airflow 2's -t. Empty: whole runs.",
            section="Tasks",
        ),
        "include_upstream": Param(
            False,
            type="boolean",
            title="Include upstream",
            description="With a task regex: also re-run the matched tasks' upstream tasks (Airflow 2's -i).",
            section="Tasks",
        ),
        "include_downstream": Param(
            False,
            type="boolean",
            title="Include downstream",
            description="With a task regex: also re-run the tasks that depend on the matched ones.",
            section="Tasks",
        ),
        "missing_runs": Param(
            "skip",
            type="string",
            enum=["skip", "trigger"],
            values_display={
                "skip": "skip: report the date as skipped",
                "trigger": "trigger: run the whole DAG for it",
            },
            title="Dates with no run",
            description="With a task regex: a date with no run cannot be partially re-run "
            "(Airflow 3 has no partial runs).",
            section="Tasks",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Only report what would happen to each date; change nothing.",
            section="How",
        ),
        "run_backwards": Param(
            False,
            type="boolean",
            title="Newest first",
            description="Run the newest date first.",
            section="How",
        ),
        "max_active_runs": Param(
            10,
            type="integer",
            minimum=1,
            maximum=LIMITS.max_active_runs,
            title="Max active runs",
            description="Most target runs of this backfill running at once.",
            section="How",
        ),
        "chunk_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=LIMITS.max_active_runs,
            title="Chunk size",
            description="Dates per trigger task instance (unit of progress in the grid, and of the "
            "failure budget: a chunk starts only while the budget lasts). Default: max_active_runs "
            "(the whole window when the target's own max_active_runs holds runs back and there is no "
            "failure budget).",
            section="How",
        ),
        "segment_size": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=1024,
            title="Segment size",
            description="Advanced: dates per controller run; larger requests continue in further runs "
            "of this DAG, one after another. Empty: the deployment default (1000).",
            section="How",
        ),
        "timeout_minutes": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=60 * 24 * 30,
            title="Timeout (minutes)",
            description="Longest this run waits for target runs to finish; then it fails naming the "
            "dates still open. Empty: the deployment default (1440).",
            section="How",
        ),
        "on_overlap": Param(
            "refuse",
            type="string",
            enum=["refuse", "wait"],
            values_display={
                "refuse": "refuse: fail at once, naming the other backfill",
                "wait": "wait: start when the other backfill has finished",
            },
            title="If another backfill has these dates",
            description="Two backfills never run the same date of a DAG; "
            "backfills of other dates run side by side.",
            section="How",
        ),
        "notify": Param(
            None,
            type=["null", "array"],
            items={"type": "string", **({"enum": list(LIMITS.notifiers)} if LIMITS.notifiers else {})},
            title="Notify",
            description="Names of this deployment's notifiers to tell when the backfill ends "
            f"({', '.join(LIMITS.notifiers) or 'none defined'}). Empty: the deployment default; "
            "[]: nobody.",
            section="How",
        ),
        "max_failed_dates": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Max failed dates",
            description="After this many failed dates no new chunk starts; the rest are cancelled. "
            "Empty: no limit.",
            section="How",
        ),
    },
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
