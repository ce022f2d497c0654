"""
# Backfill catch-up

Keeps the DAGs listed in the checked-in `include/catchup.yaml` whole: on every run, for each DAG,
it finds the logical dates of its lookback window with no run (or, with `reprocess: failed`, a
failed run) and hands at most `max_dates_per_run` of them, oldest first, to `backfill_controller`
with the reason *scheduled catch-up*. No gaps, no controller run.

Created **paused**: unpause it to turn scheduled catch-up on. A target that is paused, denied by
the deployment, or already being backfilled is skipped and said so in the log.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from include.backfill.settings import CATCHUP_SCHEDULE
from include.controller.catchup import catch_up, list_entries

with DAG(
    dag_id="backfill_catchup",
    schedule=CATCHUP_SCHEDULE.value(),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    doc_md=__doc__,
    tags=["backfill", "ops"],
    default_args={"retries": 2, "retry_delay": pendulum.duration(seconds=30)},
) as dag:
    entries = PythonOperator(task_id="entries", python_callable=list_entries)
    PythonOperator.partial(
        task_id="catch_up",
        python_callable=catch_up,
        map_index_template="{{ task.op_kwargs['dag_id'] }}",
    ).expand(op_kwargs=entries.output)
