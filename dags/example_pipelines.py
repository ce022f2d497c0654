"""
# Example targets

Three everyday pipelines to backfill, as data engineers know them from Airflow 2:

* `sales_pipeline`: daily extract -> transform -> load of one day's sales (its data interval).
* `api_ingestion_dag`: daily `api_ingestion_task` -> `transform` -> `publish`.
* `data_transformation_dag`: daily `transform` -> `validate`.

Each task only logs the window it would process and sleeps briefly.
"""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import DAG, task

START = pendulum.datetime(2024, 1, 1, tz="UTC")
DEFAULTS = {"retries": 1, "retry_delay": pendulum.duration(seconds=5)}


@task
def step(name: str, seconds: float = 0.2, **context) -> str:
    window = f"{context['data_interval_start']} .. {context['data_interval_end']}"
    print(f"{name}: processing {window}")
    time.sleep(seconds)
    return window


def _pipeline(dag_id: str, steps: list[str]) -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule="@daily",
        start_date=START,
        catchup=False,
        doc_md=__doc__,
        tags=["example"],
        default_args=DEFAULTS,
    ) as dag:
        previous = None
        for name in steps:
            current = step.override(task_id=name)(name)
            if previous is not None:
                previous >> current
            previous = current
    return dag


sales_pipeline = _pipeline("sales_pipeline", ["extract", "transform", "load"])
api_ingestion_dag = _pipeline("api_ingestion_dag", ["api_ingestion_task", "transform", "publish"])
data_transformation_dag = _pipeline("data_transformation_dag", ["transform", "validate"])
