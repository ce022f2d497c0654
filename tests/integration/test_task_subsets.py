"""Task-subset backfills end to end: re-run only some tasks of existing runs; try numbers prove it.

Targets: ``bf_chain`` (a >> b >> c), ``bf_mapped`` (shard mapped over 3 >> done), and the example
pipelines in dags/ for the three classic Airflow 2 requests.
"""

from __future__ import annotations

import pytest
from test_controller import Outcome, run_all, set_failing

# One backend is enough for this logic (the controller's REST calls, not the database, decide it);
# PostgreSQL, whose locking never fails a task instance under the suite's concurrent runs.
pytestmark = pytest.mark.backend("postgres")

CHAIN = "bf_chain"


def tries(airflow, dag_id: str, day: str) -> dict[str, int]:
    """{task_id or task_id[i]: try_number} of the run of ``dag_id`` on ``day``."""
    runs = airflow._json(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns",
        params={"logical_date_gte": f"{day}T00:00:00Z", "logical_date_lte": f"{day}T00:00:00Z"},
    )["dag_runs"]
    (run,) = runs
    tis = airflow._json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances")
    return {
        (t["task_id"] if t["map_index"] < 0 else f"{t['task_id']}[{t['map_index']}]"): t["try_number"]
        for t in tis["task_instances"]
    }


def mark_failed(airflow, dag_id: str, day: str) -> None:
    runs = airflow._json(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns",
        params={"logical_date_gte": f"{day}T00:00:00Z", "logical_date_lte": f"{day}T00:00:00Z"},
    )["dag_runs"]
    resp = airflow.api(
        "PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{runs[0]['dag_run_id']}", json={"state": "failed"}
    )
    assert resp.status_code == 200, resp.text


@pytest.fixture(scope="module")
def existing(airflow) -> dict[str, Outcome]:
    """Runs to re-run parts of: every target succeeds once, except bf_chain's b on 2024-01-10."""
    set_failing(airflow, {f"{CHAIN}.b": ["2024-01-10"]})
    results = run_all(
        airflow,
        {
            "chain": {"dag_id": CHAIN, "dates": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-10"]},
            "mapped": {"dag_id": "bf_mapped", "dates": ["2024-01-01"]},
            "api": {"dag_id": "api_ingestion_dag", "start_date": "2024-03-10", "end_date": "2024-03-12"},
            "transform": {"dag_id": "data_transformation_dag", "dates": ["2024-06-05"]},
        },
    )
    set_failing(airflow, {})
    mark_failed(airflow, "data_transformation_dag", "2024-06-05")
    return results


@pytest.fixture(scope="module")
def reruns(airflow, existing) -> dict[str, Outcome]:
    chain = {"dag_id": CHAIN, "reprocess": "all"}
    return run_all(
        airflow,
        {
            "only_b": {**chain, "dates": ["2024-01-01"], "task_regex": "^b$", "reason": "bad API data"},
            "downstream": {**chain, "dates": ["2024-01-02"], "task_regex": "^b$", "include_downstream": True},
            "upstream": {**chain, "dates": ["2024-01-03"], "task_regex": "^b$", "include_upstream": True},
            "failed_only": {
                "dag_id": CHAIN,
                "dates": ["2024-01-10"],
                "task_regex": ".",
                "reprocess": "failed",
            },
            "mapped": {
                "dag_id": "bf_mapped",
                "dates": ["2024-01-01"],
                "task_regex": "^shard$",
                "reprocess": "all",
            },
            "no_run": {"dag_id": CHAIN, "dates": ["2024-01-20"], "task_regex": "^b$"},
            "no_run_whole": {
                "dag_id": CHAIN,
                "dates": ["2024-01-21"],
                "task_regex": "^b$",
                "missing_runs": "trigger",
            },
            "bad_regex": {"dag_id": CHAIN, "dates": ["2024-01-01"], "task_regex": "(["},
            "no_match": {"dag_id": CHAIN, "dates": ["2024-01-01"], "task_regex": "^nothing$"},
            # airflow dags backfill api_ingestion_dag -s 2024-03-10 -e 2024-03-12 -t api_ingestion_task
            "classic_task": {
                "dag_id": "api_ingestion_dag",
                "start_date": "2024-03-10",
                "end_date": "2024-03-12",
                "task_regex": "api_ingestion_task",
                "reprocess": "all",
            },
            # airflow dags backfill data_transformation_dag -s 2024-06-05 -e 2024-06-05 --reset-dagruns
            "classic_reset": {
                "dag_id": "data_transformation_dag",
                "dates": ["2024-06-05"],
                "reprocess": "all",
            },
            # airflow dags backfill sales_pipeline -s 2024-01-01 -e 2024-10-26 (planned in full, as a dry run)
            "classic_first_load": {
                "dag_id": "sales_pipeline",
                "start_date": "2024-01-01",
                "end_date": "2024-10-26",
                "dry_run": True,
            },
        },
    )


def test_setup_runs_exist(existing):
    assert existing["chain"].dates(state="failed") == ["2024-01-10"]
    assert all(existing[name].state == "success" for name in ("mapped", "api", "transform"))


def test_regex_reruns_only_the_matching_task(airflow, reruns):
    out = reruns["only_b"]
    assert out.state == "success"
    (date,) = out.report["dates"]
    assert date["action"] == "cleared" and date["task_ids"] == ["b"]
    assert tries(airflow, CHAIN, "2024-01-01") == {"a": 1, "b": 2, "c": 1}


def test_include_downstream_reruns_what_depends_on_it(airflow, reruns):
    assert reruns["downstream"].state == "success"
    assert tries(airflow, CHAIN, "2024-01-02") == {"a": 1, "b": 2, "c": 2}


def test_include_upstream_reruns_what_it_depends_on(airflow, reruns):
    assert reruns["upstream"].state == "success"
    assert tries(airflow, CHAIN, "2024-01-03") == {"a": 2, "b": 2, "c": 1}


def test_reprocess_failed_reruns_only_the_failed_task_instances(airflow, reruns):
    out = reruns["failed_only"]
    assert out.state == "success"
    assert out.report["dates"][0]["task_ids"] == ["b", "c"]  # b failed, c was upstream-failed
    assert tries(airflow, CHAIN, "2024-01-10") == {"a": 1, "b": 2, "c": 1}


def test_every_map_index_of_a_mapped_task_is_rerun(airflow, reruns):
    assert reruns["mapped"].state == "success"
    assert tries(airflow, "bf_mapped", "2024-01-01") == {
        "shard[0]": 2,
        "shard[1]": 2,
        "shard[2]": 2,
        "done": 1,
    }


def test_a_date_without_a_run_is_skipped_with_a_hint(airflow, reruns):
    out = reruns["no_run"]
    assert out.state == "success"
    (date,) = out.report["dates"]
    assert date["action"] == "skipped" and "missing_runs=trigger" in date["why"]


def test_missing_runs_trigger_runs_the_whole_dag_for_such_dates(airflow, reruns):
    assert reruns["no_run_whole"].state == "success"
    assert tries(airflow, CHAIN, "2024-01-21") == {"a": 1, "b": 1, "c": 1}


def test_a_regex_that_does_not_compile_is_refused(reruns):
    out = reruns["bad_regex"]
    assert out.state == "failed" and "task_regex" in out.report["error"] and "compile" in out.report["error"]


def test_a_regex_matching_nothing_is_refused_listing_the_task_ids(reruns):
    out = reruns["no_match"]
    assert out.state == "failed"
    assert "matches no task" in out.report["error"] and "a, b, c" in out.report["error"]


def test_classic_one_task_for_a_few_days(airflow, reruns):
    out = reruns["classic_task"]
    assert out.state == "success"
    assert out.dates(action="cleared") == ["2024-03-10", "2024-03-11", "2024-03-12"]
    for day in ("2024-03-10", "2024-03-11", "2024-03-12"):
        assert tries(airflow, "api_ingestion_dag", day) == {
            "api_ingestion_task": 2,
            "transform": 1,
            "publish": 1,
        }


def test_classic_reset_of_one_failed_date(airflow, reruns):
    out = reruns["classic_reset"]
    assert out.state == "success"
    assert out.dates(action="cleared", state="success") == ["2024-06-05"]


def test_classic_first_load_plans_every_day(reruns):
    out = reruns["classic_first_load"]
    assert out.state == "success"
    assert len(out.dates(action="triggered")) == 300  # 2024-01-01 .. 2024-10-26, leap year
