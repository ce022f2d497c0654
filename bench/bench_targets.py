"""Benchmark targets. Those both sides backfill exist twice (``X`` for the controller, ``X_native``
for native backfill), so the two backfills never touch each other's runs.

* ``bench_trivial``: two empty-ish tasks (measures orchestration overhead).
* ``bench_work5``: two tasks, about 5 seconds of work per run.
* ``bench_blocker``: a deferred 1-hour wait, to keep other runs active (contention case).
* ``bench_hourly``: one empty-ish task an hour (the front door's latency and burst, dry runs only).
* ``bench_5min``: ``bench_trivial`` every five minutes (the scale case: 100,000 dates in a year).

Every schedule spans 1970 to 2025, in the past, so the scheduler makes no run of its own and
the bench has fresh dates for every round of every case.

The targets' own ``max_active_runs`` is ``BENCH_TARGET_MAX_ACTIVE_RUNS`` (set by the bench: by
default the backfills' ``max_active_runs``, as for a DAG left at Airflow's default of 16).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pendulum
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import DAG, task

START = pendulum.datetime(1970, 1, 1, tz="UTC")
END = pendulum.datetime(2025, 1, 1, tz="UTC")
TARGET_MAX_ACTIVE_RUNS = int(os.environ.get("BENCH_TARGET_MAX_ACTIVE_RUNS", "16"))


@task
def first(seconds: float = 0.0):
    time.sleep(seconds)


@task
def second(seconds: float = 0.0):
    time.sleep(seconds)


def _target(dag_id: str, seconds: float, schedule: str = "@daily") -> DAG:
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START,
        end_date=END,
        catchup=False,
        max_active_runs=TARGET_MAX_ACTIVE_RUNS,
        tags=["benchmark"],
        default_args={"retries": 0},
    ) as dag:
        first.override(task_id="first")(seconds) >> second.override(task_id="second")(seconds)
    return dag


for _suffix in ("", "_native"):
    globals()[f"bench_trivial{_suffix}"] = _target(f"bench_trivial{_suffix}", 0.0)
    globals()[f"bench_work5{_suffix}"] = _target(f"bench_work5{_suffix}", 2.5)

bench_5min = _target("bench_5min", 0.0, schedule="*/5 * * * *")

with DAG(
    dag_id="bench_hourly",
    schedule="@hourly",
    start_date=START,
    end_date=END,
    catchup=False,
    tags=["benchmark"],
) as bench_hourly:
    first.override(task_id="first")()

with DAG(
    dag_id="bench_blocker",
    schedule=None,
    start_date=START,
    max_active_runs=64,
    tags=["benchmark"],
) as bench_blocker:
    TimeDeltaSensor(task_id="wait_an_hour", delta=timedelta(hours=1), deferrable=True)
