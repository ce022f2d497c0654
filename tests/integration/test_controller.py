"""The backfill controller end to end, against a live Airflow started by the suite.

Controller runs are slow (tens of seconds), so the scenarios are started together, in two
phases, and each test then checks one behaviour of one scenario. Scenarios use disjoint dates or
targets, so they cannot see each other's runs. Dates that must fail are listed in the Variable
``bf_fail_dates`` read by the test targets (tests/dags/bf_targets.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from backfill_controller.cli.progress import progress_of
from backfill_controller.contract import (
    CONTROLLER_DAG_ID,
    TARGET_RUN_PREFIX,
    URL_PREFIX,
    Task,
    continuation_run_id,
)

# On the embedded default (SQLite). PostgreSQL runs the whole controller too, in the concurrency,
# fault, scale, task-subset and Celery-topology modules; repeating these scenarios there would
# cost two minutes of the 15-minute suite and test Airflow's SQL, not ours.
pytestmark = pytest.mark.backend("sqlite")

TIMEOUT = 900


@dataclass
class Outcome:
    run_id: str
    state: str
    report: dict[str, Any] | None

    def dates(self, **match: str) -> list[str]:
        assert self.report is not None
        return [
            d["logical_date"][:10]
            for d in self.report["dates"]
            if all(d[key] == value for key, value in match.items())
        ]


def run_all(airflow, requests: dict[str, dict[str, Any]]) -> dict[str, Outcome]:
    """Trigger every request at once, wait for all, and collect each run's report."""
    started = {name: airflow.trigger(CONTROLLER_DAG_ID, conf) for name, conf in requests.items()}
    results = {}
    for name, run_id in started.items():
        state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT)
        try:
            report = airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT)
        except Exception:
            report = None
        results[name] = Outcome(run_id, state, report)
    return results


def runs_of(airflow, dag_id: str, start: str, end: str) -> dict[str, dict[str, Any]]:
    """{YYYY-MM-DD...: run} for the runs of ``dag_id`` with logical dates in [start, end]."""
    data = airflow._json(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns",
        params={"logical_date_gte": start, "logical_date_lte": end, "limit": 100},
    )
    return {r["logical_date"]: r for r in data["dag_runs"]}


def continuation_of(airflow, head: str, segment: int) -> str:
    """The run id of continuation ``segment`` of the head run ``head``: the head's, the segment, and
    the token its backfill's record gave it (nobody can guess it)."""
    prefix = continuation_run_id(head, segment) + "_"
    runs = airflow._json(
        "GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns", params={"limit": 100, "order_by": "-id"}
    )["dag_runs"]
    (found,) = [r["dag_run_id"] for r in runs if r["dag_run_id"].startswith(prefix)]
    return found


def day_runs(airflow, dag_id: str, start: str, end: str) -> dict[str, dict[str, Any]]:
    return {k[:10]: v for k, v in runs_of(airflow, dag_id, f"{start}T00:00:00Z", f"{end}T23:59:59Z").items()}


def set_failing(airflow, fail: dict[str, list[str]]) -> None:
    airflow.api("DELETE", "/api/v2/variables/bf_fail_dates")
    resp = airflow.api("POST", "/api/v2/variables", json={"key": "bf_fail_dates", "value": json.dumps(fail)})
    assert resp.status_code in (200, 201), resp.text


def native_backfill(airflow, dag_id: str, start: str, end: str) -> None:
    """Create a native backfill, retrying SQLite's 'database is locked' (HTTP 503, or 500
    "Database error")."""
    body = {
        "dag_id": dag_id,
        "from_date": start,
        "to_date": end,
        "reprocess_behavior": "none",
        "max_active_runs": 10,
        "run_backwards": False,
        "dag_run_conf": {},
    }
    for _ in range(60):
        resp = airflow.api("POST", "/api/v2/backfills", json=body)
        if resp.status_code == 200:
            return
        assert resp.status_code in (500, 503), resp.text
        time.sleep(2)
    pytest.fail(f"native backfill of {dag_id} kept failing: {resp.text}")


# Oracle twins: the controller backfills X, native backfill X_native, over a window with a DST change.
PARITY = {
    "bf_interval_ny": ("2024-03-08", "2024-03-12"),  # CronDataIntervalTimetable, New York, spring forward
    "bf_cron_berlin": ("2024-03-29", "2024-04-02"),  # CronTriggerTimetable, Berlin, spring forward
    "bf_delta": ("2024-01-01", "2024-01-03"),  # timedelta(hours=12)
    "bf_daily": ("2024-07-01", "2024-07-03"),  # "@daily"
}

# Existing runs for the reprocess scenarios: in each range the second date fails in phase 1.
REPROCESS_RANGES = {
    "missing": ["2024-03-01", "2024-03-02", "2024-03-03"],
    "failed": ["2024-03-11", "2024-03-12", "2024-03-13"],
    "all": ["2024-03-21", "2024-03-22", "2024-03-23"],
}


@pytest.fixture(scope="module")
def phase1(airflow) -> dict[str, Outcome]:
    set_failing(
        airflow,
        {
            "bf_daily": ["2024-03-02", "2024-03-12", "2024-03-22", "2024-04-01"],
        },
    )
    for dag_id, (start, end) in PARITY.items():
        native_backfill(airflow, f"{dag_id}_native", f"{start}T00:00:00Z", f"{end}T00:00:00Z")
    stuck = start_stuck_backfill(airflow)
    requests = {
        "window": {
            "dag_id": "bf_daily",
            "start_date": "2024-01-01",
            "end_date": "2024-01-06",
            "chunk_size": 2,
            "max_active_runs": 4,
            "segment_size": 4,  # two controller runs: the head and one continuation
            "reason": "window test",
        },
        "sliding_window": {
            "dag_id": "bf_daily",
            "start_date": "2024-06-01",
            "end_date": "2024-06-09",
            "max_active_runs": 3,
            "chunk_size": 2,
        },
        # The target's own max_active_runs (2) holds the runs back: queued runs wait behind.
        "reserve": {
            "dag_id": "bf_capped",
            "start_date": "2024-01-01",
            "end_date": "2024-01-23",
            "max_active_runs": 2,
            "segment_size": 20,  # the continuation run feeds the same way
        },
        # One date per segment: the continuation takes its date from the head's plan.
        "explicit": {"dag_id": "bf_daily", "dates": ["2024-02-07", "2024-02-03"], "segment_size": 1},
        "unscheduled": {"dag_id": "bf_none", "dates": ["2024-01-05T03:00:00", "2024-01-06"]},
        "existing": {
            "dag_id": "bf_daily",
            "dates": [d for dates in REPROCESS_RANGES.values() for d in dates],
            "reason": "setup",
        },
        "budget": {
            "dag_id": "bf_daily",
            "start_date": "2024-04-01",
            "end_date": "2024-04-08",
            "chunk_size": 2,
            "max_active_runs": 2,
            "max_failed_dates": 1,
            "segment_size": 5,
        },
        "dry_run": {
            "dag_id": "bf_daily",
            "start_date": "2024-05-01",
            "end_date": "2024-05-03",
            "dry_run": True,
        },
        **{
            f"parity_{dag_id}": {"dag_id": dag_id, "start_date": start, "end_date": end}
            for dag_id, (start, end) in PARITY.items()
        },
    }
    results = run_all(airflow, requests)
    results["stuck"] = finish(airflow, stuck)
    airflow.set_paused("bf_slow", False)
    set_failing(airflow, {})
    return results


def start_stuck_backfill(airflow) -> str:
    """A backfill whose target is paused once planning is done: its runs can never finish, and
    with a window of one run its last date never gets room."""
    conf = {
        "dag_id": "bf_slow",
        "dates": ["2024-01-01", "2024-01-02", "2024-01-03"],
        "max_active_runs": 1,
        "timeout_minutes": 1,
    }
    run_id = airflow.trigger(CONTROLLER_DAG_ID, conf)
    deadline = time.monotonic() + 300
    while airflow.task_states(CONTROLLER_DAG_ID, run_id).get(Task.PLAN) != "success":
        assert time.monotonic() < deadline, "plan did not finish"
        time.sleep(1)
    airflow.set_paused("bf_slow", True)
    return run_id


def views_agree(airflow, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
    """Assert the Backfills page (which the CLI follows) says of each date what the report says;
    returns the page's view of the backfill. A date the report saw unfinished (the backfill timed
    out) may have finished since: the page is live."""
    page = airflow._json("GET", f"{URL_PREFIX}/api/backfills/{quote(run_id, safe='')}")
    shown = {c["logical_date"][:10]: (c["action"], c["state"], c["run_id"]) for c in page["cells"]}
    reported = {d["logical_date"][:10]: (d["action"], d["state"], d["run_id"]) for d in report["dates"]}
    assert shown.keys() == reported.keys()
    for day, (action, state, carrier) in reported.items():
        if state in ("pending", "queued", "running"):
            assert shown[day][::2] == (action, carrier), (day, shown[day], reported[day])
        else:
            assert shown[day] == (action, state, carrier), (day, shown[day], reported[day])
    return page


def finish(airflow, run_id: str) -> Outcome:
    state = airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT)
    return Outcome(run_id, state, airflow.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT))


@pytest.fixture(scope="module")
def phase2(airflow, phase1) -> dict[str, Outcome]:
    ranges = REPROCESS_RANGES
    return run_all(
        airflow,
        {
            "missing": {"dag_id": "bf_daily", "dates": [*ranges["missing"], "2024-03-04"]},
            "failed": {
                "dag_id": "bf_daily",
                "dates": ranges["failed"],
                "reprocess": "failed",
                "reason": "fix",
            },
            "all": {"dag_id": "bf_daily", "dates": ranges["all"], "reprocess": "completed"},
            "repeat": {"dag_id": "bf_daily", "start_date": "2024-01-01", "end_date": "2024-01-06"},
        },
    )


# ---------------------------------------------------------------- phase 1


def test_window_triggers_every_date_and_succeeds(airflow, phase1):
    out = phase1["window"]
    assert out.state == "success"
    assert out.dates(action="triggered", state="success") == [f"2024-01-0{d}" for d in range(1, 7)]
    runs = day_runs(airflow, "bf_daily", "2024-01-01", "2024-01-06")
    assert sorted(runs) == [f"2024-01-0{d}" for d in range(1, 7)]
    for day, run in runs.items():
        assert run["dag_run_id"] == f"{TARGET_RUN_PREFIX}{day}T00:00:00+00:00"
        assert run["state"] == "success"
        assert run["note"] == "backfill_controller (admin): window test"


def test_a_request_larger_than_a_segment_continues_in_a_second_run(airflow, phase1):
    out = phase1["window"]
    assert out.report["segments"] == 2
    continuation = continuation_of(airflow, out.run_id, 1)
    assert continuation.startswith(continuation_run_id(out.run_id, 1) + "_")  # the record's token
    assert airflow.run_state(CONTROLLER_DAG_ID, continuation) == "success"
    detail = airflow.api("GET", f"/backfill-controller/api/backfills/{out.run_id}").json()
    assert [c["logical_date"][:10] for c in detail["cells"]] == [f"2024-01-0{d}" for d in range(1, 7)]
    assert {c["state"] for c in detail["cells"]} == {"success"} and detail["segments"] == 2


def test_a_run_that_never_finishes_times_out_naming_dates_and_reason(airflow, phase1, figures):
    # A run whose task had already started when the target was paused may still finish: the
    # dates that never finish are one or both of the two.
    out = phase1["stuck"]
    unfinished = [d[:10] for d in (out.report or {}).get("unfinished_dates", [])]
    named = out.state == "failed" and bool(unfinished) and set(unfinished) <= {"2024-01-01", "2024-01-02"}
    figures.fault("target paused mid-backfill: runs never finish (timed out, dates named)", named)
    assert out.state == "failed"
    assert unfinished and set(unfinished) <= {"2024-01-01", "2024-01-02"}, unfinished
    log = airflow.api(
        "GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{out.run_id}/taskInstances/{Task.REPORT}/logs/1"
    ).text
    assert "timed out" in log and "paused" in log
    assert all(day in log for day in unfinished)


def test_a_date_that_never_gets_room_in_the_window_times_out_naming_it(airflow, phase1):
    # The window holds one run; a run that cannot finish keeps it full, so the chunk (the whole
    # run's three dates) waits in its worker until timeout_minutes, then fails naming what is
    # open; the date it never started is cancelled, saying why.
    out = phase1["stuck"]
    assert "2024-01-03" in out.dates(state="cancelled")
    never = next(d for d in out.report["dates"] if d["logical_date"].startswith("2024-01-03"))
    assert never["why"].startswith("not started: timed out"), never
    log = airflow.api(
        "GET",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{out.run_id}/taskInstances/{Task.TRIGGER}/logs/1?map_index=0",
    ).text
    assert "timed out (the window never had room for the next date)" in log and "paused" in log


def test_the_page_and_the_cli_say_what_the_report_says_of_a_stuck_backfill(airflow, phase1):
    out = phase1["stuck"]
    page = views_agree(airflow, out.run_id, out.report)
    progress = progress_of(page)
    tally = page["progress"]["tally"]
    assert progress.phase == "finished"
    assert (progress.counts.cancelled, progress.counts.succeeded) == (tally["cancelled"], tally["succeeded"])
    assert progress.counts.cancelled >= 1


def test_report_has_the_contract_fields(phase1):
    report = phase1["window"].report
    assert report["dag_id"] == "bf_daily" and report["dry_run"] is False
    assert report["reason"] == "window test"
    assert report["counts"]["triggered"] == 6 and report["counts"]["succeeded"] == 6
    assert {"logical_date", "run_id", "action", "state"} <= set(report["dates"][0])


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs queued or running at the same moment (from queued_at .. end_date)."""
    events = sorted(
        [(r["queued_at"], 1) for r in runs] + [(r["end_date"], -1) for r in runs], key=lambda e: (e[0], e[1])
    )
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


def test_the_window_holds_max_active_runs_runs_and_is_kept_full(airflow, phase1):
    """9 dates, max_active_runs 3, chunks of 2: never more than 3 runs at once, 3 at some moment,
    and the dates start in order."""
    assert phase1["sliding_window"].state == "success"
    runs = day_runs(airflow, "bf_daily", "2024-06-01", "2024-06-09")
    assert len(runs) == 9 and all(r["state"] == "success" for r in runs.values())
    assert most_at_once(list(runs.values())) == 3
    queued = [runs[day]["queued_at"] for day in sorted(runs)]
    assert queued == sorted(queued)


def wait_for_a_deferred_trigger(airflow, run_id: str, timeout: float = 240) -> None:
    """Wait until one of the controller run's ``trigger`` task instances waits deferred for room."""
    deadline = time.monotonic() + timeout
    while not airflow._json(
        "GET",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}/taskInstances",
        params={"task_id": Task.TRIGGER, "state": "deferred"},
    )["task_instances"]:
        assert time.monotonic() < deadline, "no trigger task was ever caught waiting deferred"
        time.sleep(0.5)


def most_running(runs: list[dict[str, Any]]) -> int:
    """The most runs running at the same moment (from start_date .. end_date)."""
    return most_at_once([{"queued_at": r["start_date"], "end_date": r["end_date"]} for r in runs])


def test_a_target_that_holds_its_runs_back_gets_queued_runs_ahead_from_a_deferred_feeder(airflow, phase1):
    """bf_capped runs at most 2 runs at once itself: the window (10) also holds up to 8 queued runs,
    so a run starts as soon as one ends, while the feeding task waits deferred (no executor slot)
    and wakes once at most 4 are open, to start 6 more. A chunk holds the whole segment: the head
    run's 20 dates are one task instance, which fills the window, waits deferred and goes on.
    Its continuation has 3."""
    out = phase1["reserve"]
    assert out.state == "success"
    runs = list(day_runs(airflow, "bf_capped", "2024-01-01", "2024-01-23").values())
    assert len(runs) == 23 and all(r["state"] == "success" for r in runs)
    assert most_running(runs) == 2
    assert 2 < most_at_once(runs) <= 10
    started = [r["start_date"] for r in sorted(runs, key=lambda r: r["logical_date"])]
    assert started == sorted(started)
    tis = airflow.api(
        "GET",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{out.run_id}/taskInstances/{Task.TRIGGER}/listMapped",
    ).json()["task_instances"]
    assert [ti["map_index"] for ti in tis] == [0]
    log = airflow.api(
        "GET",
        f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{out.run_id}/taskInstances/{Task.TRIGGER}/logs/1?map_index=0",
    ).text
    assert "waiting deferred until at most 4 are open" in log  # 20 dates, a window of 10


def test_explicit_dates_run_only_those_dates(airflow, phase1):
    out = phase1["explicit"]
    assert out.state == "success"
    assert sorted(day_runs(airflow, "bf_daily", "2024-02-01", "2024-02-29")) == ["2024-02-03", "2024-02-07"]
    assert out.report["segments"] == 2 and sorted(out.dates(state="success")) == ["2024-02-03", "2024-02-07"]
    continuation = airflow.api(
        "GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{continuation_of(airflow, out.run_id, 1)}"
    ).json()
    assert "dates" not in continuation["conf"]  # read from the head's plan, not copied


def test_unscheduled_target_takes_any_datetimes(airflow, phase1):
    assert phase1["unscheduled"].state == "success"
    runs = runs_of(airflow, "bf_none", "2024-01-01T00:00:00Z", "2024-01-31T00:00:00Z")
    assert sorted(runs) == ["2024-01-05T03:00:00Z", "2024-01-06T00:00:00Z"]
    assert all(r["data_interval_start"] == r["logical_date"] for r in runs.values())


def test_a_failing_date_fails_the_controller_and_is_named(phase1):
    out = phase1["existing"]
    assert out.state == "failed"
    failed = ["2024-03-02", "2024-03-12", "2024-03-22"]
    assert [d[:10] for d in out.report["failed_dates"]] == failed
    assert out.dates(state="success") == sorted(set(sum(REPROCESS_RANGES.values(), [])) - set(failed))


def test_failure_budget_cancels_the_remaining_chunks(airflow, phase1):
    out = phase1["budget"]
    assert out.state == "failed"
    assert out.dates(state="failed") == ["2024-04-01"]
    assert out.dates(action="cancelled") == [f"2024-04-0{d}" for d in range(3, 9)]
    assert sorted(day_runs(airflow, "bf_daily", "2024-04-01", "2024-04-08")) == ["2024-04-01", "2024-04-02"]


def test_dry_run_reports_the_plan_and_changes_nothing(airflow, phase1):
    out = phase1["dry_run"]
    assert out.state == "success" and out.report["dry_run"] is True
    assert out.dates(action="triggered") == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert day_runs(airflow, "bf_daily", "2024-05-01", "2024-05-03") == {}


@pytest.mark.parametrize("dag_id", list(PARITY), ids=[f"{d} like native" for d in PARITY])
def test_dates_and_data_intervals_equal_native_backfill(airflow, phase1, dag_id):
    start, end = PARITY[dag_id]
    assert phase1[f"parity_{dag_id}"].state == "success"
    body = {
        "dag_id": dag_id,
        "from_date": f"{start}T00:00:00Z",
        "to_date": f"{end}T00:00:00Z",
        "reprocess_behavior": "completed",  # our runs exist now; "none" would list no date
    }
    dry = airflow._json("POST", "/api/v2/backfills/dry_run", json=body)
    native_dates = sorted(b["logical_date"] for b in dry["backfills"])
    ours = runs_of(airflow, dag_id, f"{start}T00:00:00Z", f"{end}T23:59:59Z")
    twin = runs_of(airflow, f"{dag_id}_native", f"{start}T00:00:00Z", f"{end}T23:59:59Z")
    assert sorted(ours) == native_dates == sorted(twin)
    for logical_date, run in ours.items():
        native = twin[logical_date]
        assert (run["data_interval_start"], run["data_interval_end"]) == (
            native["data_interval_start"],
            native["data_interval_end"],
        ), logical_date
        assert run["run_after"] == native["run_after"], logical_date


# ---------------------------------------------------------------- phase 2


def test_reprocess_missing_only_adds_dates_without_runs(phase2):
    out = phase2["missing"]
    assert out.state == "success"
    assert out.dates(action="triggered") == ["2024-03-04"]
    assert out.dates(action="skipped") == REPROCESS_RANGES["missing"]


def test_reprocess_failed_clears_only_the_failed_run(airflow, phase1, phase2):
    out = phase2["failed"]
    assert out.state == "success"
    assert out.dates(action="cleared", state="success") == ["2024-03-12"]
    assert out.dates(action="skipped") == ["2024-03-11", "2024-03-13"]
    run = day_runs(airflow, "bf_daily", "2024-03-12", "2024-03-12")["2024-03-12"]
    assert run["dag_run_id"] == f"{TARGET_RUN_PREFIX}2024-03-12T00:00:00+00:00"  # re-run under its own id
    # the first backfill's note stays; the re-run's is added below it
    assert run["note"] == "backfill_controller (admin): setup\n\nbackfill_controller (admin): fix"


def test_reprocess_all_clears_every_run(phase2):
    out = phase2["all"]
    assert out.state == "success"
    assert out.dates(action="cleared", state="success") == REPROCESS_RANGES["all"]


def test_repeating_a_request_with_missing_creates_nothing(airflow, phase1, phase2):
    out = phase2["repeat"]
    assert out.state == "success"
    assert out.report["counts"]["triggered"] == 0 and out.report["counts"]["skipped"] == 6
    runs = day_runs(airflow, "bf_daily", "2024-01-01", "2024-01-06")
    assert len(runs) == 6
