"""The estimated end of a running backfill, measured end to end.

A backfill of ``bf_steady`` (every run sleeps 8 s) keeps 3 runs going. Once a quarter of its dates
have finished, its detail's ``eta.end`` must lie within 25 % of the time really left of the real
end (the last of its runs' end). The measured error is printed (``-s`` shows it).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest

from backfill_controller.cli.progress import format_progress, progress_of
from backfill_controller.contract import CONTROLLER_DAG_ID, URL_PREFIX

pytestmark = pytest.mark.backend("sqlite")

TARGET = "bf_steady"
FIRST, LAST = "2024-08-01", "2024-08-16"  # 16 dates
WINDOW = 3
DETAIL = URL_PREFIX + "/api/backfills/{}"


def _detail(airflow, run_id: str) -> dict[str, Any]:
    return airflow._json("GET", DETAIL.format(quote(run_id, safe="")))


def _first_estimate_past_a_quarter(airflow, run_id: str, timeout: float = 600) -> dict[str, Any]:
    """The backfill's detail as soon as a quarter of its dates have finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        detail = _detail(airflow, run_id)
        tally = detail["progress"]["tally"]
        if tally["acting"] and tally["finished"] * 4 >= tally["acting"]:
            return detail
        airflow.check_alive()
        time.sleep(0.5)
    pytest.fail(f"a quarter of the dates of {run_id} did not finish in {timeout:.0f}s")


def test_after_a_quarter_of_the_dates_the_estimated_end_is_within_a_quarter_of_the_time_left(airflow):
    conf = {"dag_id": TARGET, "start_date": FIRST, "end_date": LAST, "max_active_runs": WINDOW}
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)

    detail = _first_estimate_past_a_quarter(airflow, run_id)
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=900)

    assert state == "success"
    eta = detail["eta"]
    assert detail["phase"] == "running" and eta is not None, detail
    assert eta["basis"] == "finished_runs"
    assert "ETA " in format_progress(progress_of(detail), 0)
    runs = airflow.dag_runs(TARGET, FIRST, LAST)
    real_end = max(datetime.fromisoformat(r["end_date"]) for r in runs)
    estimated_end = datetime.fromisoformat(eta["end"])
    asked_at = estimated_end.timestamp() - eta["remaining_seconds"]
    left = real_end.timestamp() - asked_at
    error = abs(estimated_end.timestamp() - real_end.timestamp())
    print(
        f"\nETA after {detail['progress']['finished']}/{detail['progress']['acting']} dates: "
        f"estimated {eta['remaining_seconds']:.1f} s left, really {left:.1f} s: "
        f"off by {error:.1f} s ({error / left:.1%} of the time left)"
    )
    assert error <= 0.25 * left
