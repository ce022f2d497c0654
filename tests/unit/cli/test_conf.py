"""Specification of :mod:`backfill_controller.cli.conf`: a ``backfill`` command line as the
controller's conf."""

from __future__ import annotations

from typing import Any

import pytest

from backfill_controller.cli.common import UsageError
from backfill_controller.cli.conf import ignored_flag_notes, to_conf
from backfill_controller.cli.flags import build_parser
from backfill_controller.contract import CONTROLLER_DAG_ID


def conf(*argv: str) -> dict[str, Any]:
    return to_conf(build_parser().parse_args(list(argv)))


def refused(*argv: str) -> str:
    with pytest.raises(UsageError) as info:
        conf(*argv)
    return str(info.value)


# --- the three everyday cases ------------------------------------------------------------------


def test_first_load_of_a_new_pipeline_is_a_window():
    assert conf("sales_pipeline", "-s", "2024-01-01", "-e", "2024-10-26") == {
        "dag_id": "sales_pipeline",
        "start_date": "2024-01-01",
        "end_date": "2024-10-26",
    }


def test_one_task_for_a_few_days_runs_only_that_task():
    argv = ["api_ingestion_dag", "-s", "2024-03-10", "-e", "2024-03-12", "-t", "api_ingestion_task"]
    assert conf(*argv, "-i", "--reset-dagruns") == {
        "dag_id": "api_ingestion_dag",
        "start_date": "2024-03-10",
        "end_date": "2024-03-12",
        "reprocess": "all",
        "task_regex": "api_ingestion_task",
        "include_upstream": False,
    }


def test_one_failed_date_is_that_one_date_re_run():
    assert conf("data_transformation_dag", "-s", "2024-06-05", "--reset-dagruns") == {
        "dag_id": "data_transformation_dag",
        "dates": ["2024-06-05"],
        "reprocess": "all",
    }


# --- every flag --------------------------------------------------------------------------------

BASE = ("sales", "-s", "2024-01-01", "-e", "2024-01-31")
WINDOW = {"dag_id": "sales", "start_date": "2024-01-01", "end_date": "2024-01-31"}

FLAGS = {
    "--reset-dagruns": (["--reset-dagruns"], {"reprocess": "all"}),
    "--rerun-failed-tasks": (["--rerun-failed-tasks"], {"reprocess": "failed"}),
    "-B": (["-B"], {"run_backwards": True}),
    "--run-backwards": (["--run-backwards"], {"run_backwards": True}),
    "-c": (["-c", '{"mode": "delta", "n": 2}'], {"conf": {"mode": "delta", "n": 2}}),
    "--conf empty object": (["--conf", "{}"], {"conf": {}}),
    "--dry-run": (["--dry-run"], {"dry_run": True}),
    "--continue-on-failures (the default)": (["--continue-on-failures"], {}),
    "--max-active-runs": (["--max-active-runs", "4"], {"max_active_runs": 4}),
    "--chunk-size": (["--chunk-size", "2"], {"chunk_size": 2}),
    "--chunk-size with --max-active-runs": (
        ["--max-active-runs", "4", "--chunk-size", "4"],
        {"max_active_runs": 4, "chunk_size": 4},
    ),
    "--max-failed-dates": (["--max-failed-dates", "3"], {"max_failed_dates": 3}),
    "--reason": (["--reason", "late files"], {"reason": "late files"}),
    "--on-overlap": (["--on-overlap", "wait"], {"on_overlap": "wait"}),
    "--timeout-minutes": (["--timeout-minutes", "90"], {"timeout_minutes": 90}),
    "--segment-size": (["--segment-size", "500"], {"segment_size": 500}),
    "--notify": (["--notify", "data-team, ops"], {"notify": ["data-team", "ops"]}),
    "--notify '' tells nobody": (["--notify", ""], {"notify": []}),
    "-t without -i includes upstream (Airflow 2)": (
        ["-t", "^load"],
        {"task_regex": "^load", "include_upstream": True},
    ),
    "-t with -i: only the matching tasks": (
        ["-t", "^load", "-i"],
        {"task_regex": "^load", "include_upstream": False},
    ),
    "--task-regex --ignore-dependencies": (
        ["--task-regex", "x", "--ignore-dependencies"],
        {"task_regex": "x", "include_upstream": False},
    ),
    "--include-downstream": (
        ["-t", "x", "--include-downstream"],
        {"task_regex": "x", "include_upstream": True, "include_downstream": True},
    ),
    "--missing-runs trigger": (
        ["-t", "x", "-i", "--missing-runs", "trigger"],
        {"task_regex": "x", "include_upstream": False, "missing_runs": "trigger"},
    ),
    "-i without -t has no effect": (["-i"], {}),
    "ignored Airflow 2 flags": (
        ["-l", "-x", "-y", "-S", "dags/", "--delay-on-limit", "1.5", "--local"],
        {},
    ),
    "connection and output flags are not conf": (
        ["--api-url", "http://h:1", "--username", "u", "--password", "p", "--no-wait", "-v"],
        {},
    ),
}


@pytest.mark.parametrize("name", list(FLAGS), ids=list(FLAGS))
def test_each_flag_sets_its_conf_key(name):
    argv, expected = FLAGS[name]
    assert conf(*BASE, *argv) == {**WINDOW, **expected}


DATES = {
    "window": (
        ["-s", "2024-01-01", "-e", "2024-01-03"],
        {"start_date": "2024-01-01", "end_date": "2024-01-03"},
    ),
    "window of one day (Airflow 2 spelling)": (
        ["-s", "2024-06-05", "-e", "2024-06-05"],
        {"start_date": "2024-06-05", "end_date": "2024-06-05"},
    ),
    "-s alone is one date": (["-s", "2024-06-05"], {"dates": ["2024-06-05"]}),
    "-e alone is one date": (["-e", "2024-06-05"], {"dates": ["2024-06-05"]}),
    "ISO datetime with an offset": (
        ["-s", "2024-03-10T06:00:00-04:00"],
        {"dates": ["2024-03-10T06:00:00-04:00"]},
    ),
    "--dates comma-separated": (
        ["--dates", "2024-01-05,2024-01-10"],
        {"dates": ["2024-01-05", "2024-01-10"]},
    ),
    "--dates repeated, spaces around commas": (
        ["--dates", "2024-01-05, 2024-01-10", "--dates", "2024-02-01"],
        {"dates": ["2024-01-05", "2024-01-10", "2024-02-01"]},
    ),
    "--dates keeps the given order (the controller sorts)": (
        ["--dates", "2024-01-10,2024-01-05"],
        {"dates": ["2024-01-10", "2024-01-05"]},
    ),
}


@pytest.mark.parametrize("name", list(DATES), ids=list(DATES))
def test_dates_are_a_window_one_date_or_a_list(name):
    argv, expected = DATES[name]
    assert conf("sales", *argv) == {"dag_id": "sales", **expected}


# --- refused command lines ---------------------------------------------------------------------

REFUSED = {
    "no dates": (["sales"], ["no dates", "-s/--start-date", "--dates"]),
    "--dates with -s": (["sales", "--dates", "2024-01-05", "-s", "2024-01-01"], ["--dates", "not both"]),
    "--dates with -e": (["sales", "--dates", "2024-01-05", "-e", "2024-01-01"], ["--dates", "not both"]),
    "start after end": (
        ["sales", "-s", "2024-02-01", "-e", "2024-01-01"],
        ["-s/--start-date 2024-02-01 is after -e/--end-date 2024-01-01"],
    ),
    "start not a date": (
        ["sales", "-s", "yesterday", "-e", "2024-01-01"],
        ["-s/--start-date", "'yesterday'"],
    ),
    "impossible date": (["sales", "-s", "2024-02-30"], ["-s/--start-date", "'2024-02-30'", "YYYY-MM-DD"]),
    "end not a date": (["sales", "-s", "2024-01-01", "-e", "01/31/2024"], ["-e/--end-date", "01/31/2024"]),
    "a bad date in --dates": (["sales", "--dates", "2024-01-05,2024-13-01"], ["--dates", "2024-13-01"]),
    "an empty date in --dates": (["sales", "--dates", "2024-01-05,,2024-01-06"], ["--dates", "empty"]),
    "the same date twice": (
        ["sales", "--dates", "2024-01-05,2024-01-05T00:00:00Z"],
        ["--dates", "same date", "once"],
    ),
    "-c not JSON": (["sales", "-s", "2024-01-01", "-c", "{mode: full}"], ["-c/--conf", "not valid JSON"]),
    "-c not an object": (
        ["sales", "-s", "2024-01-01", "-c", '["full"]'],
        ["-c/--conf", "JSON object", "list"],
    ),
    "both reprocess flags": (
        ["sales", "-s", "2024-01-01", "--reset-dagruns", "--rerun-failed-tasks"],
        ["--reset-dagruns", "--rerun-failed-tasks", "not both"],
    ),
    "--include-downstream without -t": (
        ["sales", "-s", "2024-01-01", "--include-downstream"],
        ["--include-downstream", "-t/--task-regex"],
    ),
    "--missing-runs without -t": (
        ["sales", "-s", "2024-01-01", "--missing-runs", "trigger"],
        ["--missing-runs", "-t/--task-regex"],
    ),
    "chunk larger than max active runs": (
        ["sales", "-s", "2024-01-01", "--max-active-runs", "2", "--chunk-size", "5"],
        ["--chunk-size 5", "--max-active-runs 2"],
    ),
    "failure budget with --continue-on-failures": (
        ["sales", "-s", "2024-01-01", "--continue-on-failures", "--max-failed-dates", "2"],
        ["--continue-on-failures", "--max-failed-dates"],
    ),
    "bad dag_id": (["sales pipeline", "-s", "2024-01-01"], ["DAG_ID", "'sales pipeline'"]),
    "the controller itself": ([CONTROLLER_DAG_ID, "-s", "2024-01-01"], ["itself"]),
    "--pool": (
        ["sales", "-s", "2024-01-01", "--pool", "p"],
        ["--pool", "not supported", "--max-active-runs"],
    ),
    "-m": (["sales", "-s", "2024-01-01", "-m"], ["-m/--mark-success", "not supported", "PATCH"]),
    "-I": (["sales", "-s", "2024-01-01", "-I"], ["--ignore-first-depends-on-past", "not supported"]),
    "--disable-retry": (["sales", "-s", "2024-01-01", "--disable-retry"], ["--disable-retry", "retries=0"]),
    "--treat-dag-id-as-regex": (
        ["sales", "-s", "2024-01-01", "--treat-dag-id-as-regex"],
        ["not supported", "once for each DAG"],
    ),
}


@pytest.mark.parametrize("name", list(REFUSED), ids=list(REFUSED))
def test_bad_command_lines_are_refused_naming_the_flags(name):
    argv, fragments = REFUSED[name]
    message = refused(*argv)
    for fragment in fragments:
        assert fragment in message


def test_ignored_flags_print_a_note_saying_why():
    args = build_parser().parse_args(["sales", "-s", "2024-01-01", "--local", "-x", "-i"])
    notes = ignored_flag_notes(args)
    assert notes == [
        "-l/--local has no effect: runs go to the deployment's executor",
        "-x/--donot-pickle has no effect: Airflow 3 does not pickle DAGs",
        "-i/--ignore-dependencies has no effect without -t/--task-regex",
    ]


# --- older runbooks: -D DATE -----------------------------------------------------------------


def test_the_old_runbook_line_re_runs_that_one_date():
    assert conf("data_transformation_dag", "-D", "2024-06-05", "--reset_dagruns") == conf(
        "data_transformation_dag", "-s", "2024-06-05", "--reset-dagruns"
    )


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["-D", "2024-06-05", "-s", "2024-06-01"], ["-D DATE is one date", "-s/--start-date"]),
        (["-D", "2024-06-05", "-e", "2024-06-07"], ["-D DATE is one date", "-e/--end-date"]),
        (["-D", "2024-06-05", "--dates", "2024-06-06"], ["-D DATE is one date", "--dates"]),
        (
            ["-D", "2024-06-05", "-s", "2024-06-01", "-e", "2024-06-07"],
            ["-s/--start-date or -e/--end-date"],
        ),
        (["-D", "2024-06-05", "-D", "2024-06-06"], ["-D: give one date", "--dates"]),
        (["-D", "June 5th"], ["-D: 'June 5th' is not a date"]),
    ],
    ids=["with -s", "with -e", "with --dates", "with a window", "twice", "not a date"],
)
def test_minus_d_is_one_date_given_alone(argv, fragments):
    message = refused("sales", *argv)
    for fragment in fragments:
        assert fragment in message


def test_a_dag_named_like_a_sub_command_is_backfilled_as_before():
    assert conf("status", "-s", "2024-01-01") == {"dag_id": "status", "dates": ["2024-01-01"]}
    assert conf("list", "--dates", "2024-01-01") == {"dag_id": "list", "dates": ["2024-01-01"]}
