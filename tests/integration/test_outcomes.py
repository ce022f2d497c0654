"""Each date's outcome is what happened to it, and the report, the page and the CLI say the same."""

from __future__ import annotations

import time

from test_controller import day_runs, views_agree

from backfill_controller.cli.progress import progress_of
from backfill_controller.contract import CONTROLLER_DAG_ID, Task

TAKEN_RUN_ID = "manual__taken_by_hand"


def test_a_date_another_run_takes_after_planning_is_adopted_and_named(airflow):
    """Someone runs the last date by hand while the backfill works through the first ones: the
    controller adopts that run (waits for it, reports it), and ends as soon as it has finished."""
    target, first, last = "bf_capped", "2024-11-01", "2024-11-06"
    conf = {
        "dag_id": target,
        "start_date": first,
        "end_date": last,
        "max_active_runs": 1,
        "chunk_size": 1,
        "timeout_minutes": 10,
        "reason": "adoption test",
    }
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    deadline = time.monotonic() + 300
    while not day_runs(airflow, target, first, first):
        assert time.monotonic() < deadline, "the backfill never started"
        time.sleep(0.5)
    body = {"dag_run_id": TAKEN_RUN_ID, "logical_date": f"{last}T00:00:00Z", "conf": {}}
    response = airflow.api("POST", f"/api/v2/dags/{target}/dagRuns", json=body)
    assert response.status_code in (200, 201), response.text

    state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=600)
    report = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)
    taken = next(d for d in report["dates"] if d["logical_date"].startswith(last))
    assert taken["action"] == "adopted" and taken["run_id"] == TAKEN_RUN_ID, taken
    assert TAKEN_RUN_ID in taken["why"]
    assert taken["state"] == airflow.run_state(target, TAKEN_RUN_ID) == "success"
    assert state == "success", report
    assert report["counts"]["adopted"] == 1 and report["counts"]["succeeded"] == 6
    runs = day_runs(airflow, target, first, last)
    assert runs[last]["dag_run_id"] == TAKEN_RUN_ID  # never a second run for the date

    page = views_agree(airflow, run_id, report)
    assert page["phase"] == "succeeded"
    cli = progress_of(page)
    assert (cli.phase, cli.counts.succeeded, cli.counts.failed, cli.counts.acting) == ("finished", 6, 0, 6)
