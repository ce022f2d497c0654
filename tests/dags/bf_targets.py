"""Target DAGs for the end-to-end tests: one per kind of schedule, each with a native-backfill twin.

Every target has two tasks. ``work`` fails when the Variable ``bf_fail_dates`` (JSON
``{dag_id: ["YYYY-MM-DD", ...]}``) lists its logical date, so a test decides which dates fail
without changing the DAG; it returns the run's data interval so tests can compare it.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, task
from airflow.timetables.interval import CronDataIntervalTimetable
from airflow.timetables.trigger import CronTriggerTimetable

START = pendulum.datetime(2024, 1, 1, tz="UTC")
# Past end_date: the scheduler creates no runs of its own (backfills ignore end_date, like native).
END = pendulum.datetime(2025, 1, 1, tz="UTC")

SCHEDULES = {
    "bf_daily": "@daily",
    "bf_interval_ny": CronDataIntervalTimetable("0 6 * * *", timezone="America/New_York"),
    "bf_cron_berlin": CronTriggerTimetable("30 1 * * *", timezone="Europe/Berlin"),
    "bf_delta": timedelta(hours=12),
    "bf_none": None,
    "bf_hourly": "@hourly",
}


@task
def work(**context):
    from airflow.sdk import Variable

    fail = Variable.get("bf_fail_dates", default={}, deserialize_json=True)
    day = context["logical_date"].strftime("%Y-%m-%d") if context["logical_date"] else None
    if day in fail.get(context["dag"].dag_id, []):
        raise RuntimeError(f"bf_fail_dates asks {day} to fail")
    return {
        "data_interval_start": context["data_interval_start"].isoformat(),
        "data_interval_end": context["data_interval_end"].isoformat(),
    }


def _dag(
    dag_id: str, schedule="@daily", retries: int = 0, end_date=END, max_active_runs: int = 16, **kwargs
) -> DAG:
    """A test target: runs only when backfilled (its end_date is past), tagged, no retries by default."""
    default_args = {"retries": retries, "retry_delay": timedelta(seconds=5)}
    return DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START,
        end_date=end_date,
        catchup=False,
        max_active_runs=max_active_runs,
        tags=["backfill-test"],
        default_args=default_args,
        **kwargs,
    )


def _target(dag_id: str, schedule, **kwargs) -> DAG:
    with _dag(dag_id, schedule, **kwargs) as dag:
        work() >> EmptyOperator(task_id="done")
    return dag


for _dag_id, _schedule in SCHEDULES.items():
    globals()[_dag_id] = _target(_dag_id, _schedule)
    globals()[f"{_dag_id}_native"] = _target(f"{_dag_id}_native", _schedule)

bf_params = _target(
    "bf_params",
    "@daily",
    params={
        "batch_size": Param(100, type="integer", minimum=1),
        "mode": Param("full", enum=["full", "delta"]),
    },
)


@task
def step(**context):
    """Fails when ``bf_fail_dates["<dag_id>.<task_id>"]`` lists the logical date."""
    from airflow.sdk import Variable

    fail = Variable.get("bf_fail_dates", default={}, deserialize_json=True)
    key = f"{context['dag'].dag_id}.{context['ti'].task_id}"
    if context["logical_date"].strftime("%Y-%m-%d") in fail.get(key, []):
        raise RuntimeError(f"bf_fail_dates asks {key} to fail")


with _dag("bf_chain") as bf_chain:
    step.override(task_id="a")() >> step.override(task_id="b")() >> step.override(task_id="c")()


@task
def shard(number: int, **context):
    return number


with _dag("bf_mapped") as bf_mapped:
    shard.expand(number=[1, 2, 3]) >> EmptyOperator(task_id="done")


@task
def slow():
    import time

    time.sleep(20)


with _dag("bf_slow") as bf_slow:
    slow() >> EmptyOperator(task_id="done")


@task
def nap(seconds: int = 2):
    import time

    time.sleep(seconds)


# Its own max_active_runs holds runs back: the controller keeps queued runs ahead and feeds deferred.
# Its runs last long enough (about 6 s) that the 4 runs left open when a deferred feeding task hands
# over still run while the next chunk's task starts on a busy machine, which then finds the window full.
with _dag("bf_capped", max_active_runs=2) as bf_capped:
    nap(4) >> EmptyOperator(task_id="done")


# Every run takes about the same time (one task sleeping 8 s): the estimated end is measured on it.
with _dag("bf_steady") as bf_steady:
    nap.override(task_id="work")(8)

with _dag("bf_sturdy", retries=3) as bf_sturdy:
    # Survives its worker being killed (retries): for the fault-injection tests.
    step.override(task_id="load")() >> EmptyOperator(task_id="done")

with _dag("bf_sturdy_capped", retries=3, max_active_runs=2) as bf_sturdy_capped:
    # The same, holding its runs back itself: the controller feeds it deferred.
    nap.override(task_id="load")() >> EmptyOperator(task_id="done")

# Scheduled like a live pipeline (no end_date): the scheduler makes its latest run, the catch-up the rest.
bf_recent = _target("bf_recent", "@daily", end_date=None)
# Paused by its owner: the catch-up must leave it alone and say so.
bf_paused = _target("bf_paused", "@daily", end_date=None, is_paused_upon_creation=True)

# Backfilled only by users with rights on it (tests/integration/test_authorization.py): task ids
# that would show in a log or XCom, and its own max_active_runs of 1 keeps a backfill's runs queued.
with _dag("bf_secured", max_active_runs=1) as bf_secured:
    nap.override(task_id="secret_ingest_step")(3) >> EmptyOperator(task_id="secret_publish_step")

# Accepts only manual and scheduled runs: the controller's operator-triggered runs are refused.
bf_manual_only = _target("bf_manual_only", "@daily", allowed_run_types=["manual", "scheduled"])

# A task id on which a regex with nested quantifiers backtracks catastrophically (hostile task_regex).
with DAG(
    dag_id="bf_long_task_ids", schedule="@daily", start_date=START, end_date=END, catchup=False
) as bf_long_task_ids:
    EmptyOperator(task_id="a" * 200 + "_x")
