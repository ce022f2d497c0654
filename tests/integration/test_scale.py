"""Scale: a 10,000-date request plans and reports within Airflow's limits.

A real run over 10,000 dates takes hours on a 2-core machine, so the full size is a dry run (it
plans, segments and reports every date, and creates nothing); real runs that cross a segment
boundary are in test_controller.py (``segment_size``).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.backend("postgres")

CONTROLLER = "backfill_controller"
ONE_MB = 1024 * 1024
HOURS_IN_WINDOW = 9961  # 2023-01-01T00:00 .. 2024-02-20T00:00, hourly


@pytest.fixture(scope="module")
def big_dry_run(airflow):
    conf = {"dag_id": "bf_hourly", "start_date": "2023-01-01", "end_date": "2024-02-20", "dry_run": True}
    run_id = airflow.trigger(CONTROLLER, conf)
    state = airflow.wait_for_run(CONTROLLER, run_id, timeout=600)
    return run_id, state


def test_ten_thousand_dates_are_planned_and_reported(airflow, big_dry_run):
    run_id, state = big_dry_run
    assert state == "success"
    report = airflow.xcom(CONTROLLER, run_id, "report")
    assert report["counts"]["dates"] == report["counts"]["triggered"] == HOURS_IN_WINDOW
    assert report["segments"] == 10  # 1000 dates per segment: no mapped task near max_map_length
    assert report["dates_truncated"] is True and len(report["dates"]) <= 2000


def test_no_xcom_of_the_run_reaches_one_megabyte(airflow, big_dry_run):
    run_id, _ = big_dry_run
    sizes = airflow.xcom_sizes(CONTROLLER, run_id, ("plan", "report"))
    assert len(sizes) >= 12
    assert max(sizes.values()) < ONE_MB, sizes


def test_planning_stays_within_memory_bounds(airflow, big_dry_run):
    run_id, _ = big_dry_run
    stats = airflow.xcom(CONTROLLER, run_id, "plan", key="stats")
    assert stats["dates"] == HOURS_IN_WINDOW
    assert stats["peak_rss_mb"] < 300, stats


def test_a_window_past_the_maximum_dates_per_request_is_refused(airflow):
    conf = {"dag_id": "bf_hourly", "start_date": "2022-01-01", "end_date": "2024-02-20", "dry_run": True}
    run_id = airflow.trigger(CONTROLLER, conf)
    assert airflow.wait_for_run(CONTROLLER, run_id, timeout=600) == "failed"
    error = airflow.xcom(CONTROLLER, run_id, "report")["error"]
    assert (
        "end_date" in error
        and "more than 10000 dates" in error
        and "[backfill_controller] max_dates_per_request" in error
    )
