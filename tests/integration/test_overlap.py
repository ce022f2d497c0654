"""Two backfills of the same dates that both say ``on_overlap: wait`` never wait for each other.

The one that claims its dates first goes ahead; the other waits deferred (no executor slot) and
then runs only what is left. Both end, every date runs once. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from test_controller import TIMEOUT, day_runs

from backfill_controller.contract import CONTROLLER_DAG_ID, Task

TARGET = "bf_capped"


def test_two_waiting_backfills_of_the_same_dates_both_finish(airflow, figures):
    first, last = "2024-07-01", "2024-07-04"
    conf = {
        "dag_id": TARGET,
        "start_date": first,
        "end_date": last,
        "on_overlap": "wait",
        "max_active_runs": 2,
    }
    a = airflow.trigger(CONTROLLER_DAG_ID, conf)
    b = airflow.trigger(CONTROLLER_DAG_ID, conf)
    states = [airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) for run_id in (a, b)]
    reports = [airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT) for run_id in (a, b)]
    runs = day_runs(airflow, TARGET, first, last)
    acted = sorted(d["logical_date"][:10] for r in reports for d in r["dates"] if d["action"] == "triggered")
    ok = states == ["success", "success"] and acted == sorted(runs) and len(runs) == 4
    figures.fault(f"two on_overlap=wait backfills of the same dates at once ({airflow.backend})", ok)
    assert states == ["success", "success"], reports
    assert len(runs) == 4 and {r["state"] for r in runs.values()} == {"success"}
    assert acted == sorted(runs)  # each date triggered by exactly one of them
