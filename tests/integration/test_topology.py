"""The production topology of docker-compose.yaml, as local processes: PostgreSQL, Redis, the
CeleryExecutor with a Celery worker, api-server, scheduler, dag-processor and triggerer. A backfill
of the example sales_pipeline completes on it, its tasks run by the Celery worker.

This module starts its own Airflow (the suite's shared one uses the LocalExecutor).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from conftest import DAGS_TIMEOUT, REPO_ROOT, SECRET, START_TIMEOUT, build_dags_folder
from test_controller import TIMEOUT

from backfill_controller.contract import CONTROLLER_DAG_ID, Task

pytestmark = pytest.mark.backend("postgres")

DATES = ["2024-02-01", "2024-02-02", "2024-02-03"]


@pytest.fixture(scope="module")
def celery_airflow():
    from scripts.local_airflow import LocalAirflow

    home = Path(tempfile.mkdtemp(prefix="backfill-airflow-celery-"))
    build_dags_folder(home / "dags")
    instance = LocalAirflow(
        home=home,
        backend="postgres",
        executor="celery",
        dags_folder=home / "dags",
        plugins_folder=REPO_ROOT / "plugins",
        password=SECRET,
    )
    try:
        instance.start(timeout=START_TIMEOUT)
        instance.wait_for_dags([CONTROLLER_DAG_ID, "sales_pipeline"], timeout=DAGS_TIMEOUT)
        yield instance
    finally:
        instance.stop(grace=5)


@pytest.fixture(scope="module")
def backfill(celery_airflow):
    conf = {"dag_id": "sales_pipeline", "start_date": DATES[0], "end_date": DATES[-1], "reason": "celery"}
    run_id = celery_airflow.trigger(CONTROLLER_DAG_ID, conf)
    state = celery_airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT)
    return state, celery_airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)


def test_the_topology_runs_every_service_of_the_compose_file(celery_airflow):
    assert celery_airflow.settings["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert set(celery_airflow.processes) == {
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "redis",
        "celery-worker",
    }


def test_a_backfill_completes_on_celery(backfill):
    state, report = backfill
    assert state == "success", report
    assert [d["logical_date"][:10] for d in report["dates"]] == DATES
    assert {d["state"] for d in report["dates"]} == {"success"}


def test_the_celery_worker_ran_the_tasks(celery_airflow, backfill):
    log = celery_airflow.log_path("celery-worker").read_text(errors="replace")
    assert log.count("succeeded") >= len(DATES) * 3  # extract, transform, load per date
