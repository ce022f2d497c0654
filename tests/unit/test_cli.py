"""Specification of the ``backfill`` command's pure parts: flags -> conf, where Airflow is, progress.

No server: :func:`main` is only run where it stops before any HTTP call (bad command lines), and
:func:`follow` reads a fake API's answers.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from include.backfill.state import Counts, Phase
from include.cli.commands import (
    CONTROLLER_DAG_ID,
    DEFAULT_API_URL,
    EXIT_FAILED,
    EXIT_STATUS_UNREACHABLE,
    EXIT_STILL_RUNNING,
    EXIT_SUCCESS,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    LEGACY_FLAGS,
    ApiSettings,
    Progress,
    ProgressPrinter,
    UsageError,
    api_settings,
    build_list_parser,
    build_parser,
    build_status_parser,
    command_of,
    follow,
    format_list,
    format_progress,
    format_status,
    ignored_flag_notes,
    list_footer,
    main,
    parse_connection_uri,
    progress_of,
    redact,
    status_exit_code,
    to_conf,
    ui_link,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


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
    "the controller itself": (["backfill_controller", "-s", "2024-01-01"], ["itself"]),
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


@pytest.mark.parametrize(
    "argv",
    [
        ["--max-active-runs", "0"],
        ["--chunk-size", "-1"],
        ["--max-failed-dates", "two"],
        ["--missing-runs", "no"],
    ],
    ids=["max active runs zero", "negative chunk", "not a number", "not a choice"],
)
def test_argparse_refuses_bad_values_with_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["sales", "-s", "2024-01-01", *argv])
    assert info.value.code == EXIT_USAGE
    assert argv[0] in capsys.readouterr().err


def test_refused_command_line_exits_2_before_any_call(capsys):
    assert main(["sales", "--dates", "2024-01-05", "-s", "2024-01-01"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage: backfill" in err and "backfill: error: give either --dates" in err


def test_every_legacy_flag_is_accepted_by_the_parser_and_documented():
    help_text = build_parser().format_help()
    for flag in LEGACY_FLAGS:
        assert flag.flags[-1] in help_text
        assert ("refused: " if flag.refused else "ignored: ") + flag.note.split()[0] in help_text


def test_ignored_flags_print_a_note_saying_why():
    args = build_parser().parse_args(["sales", "-s", "2024-01-01", "--local", "-x", "-i"])
    notes = ignored_flag_notes(args)
    assert notes == [
        "-l/--local has no effect: runs go to the deployment's executor",
        "-x/--donot-pickle has no effect: Airflow 3 does not pickle DAGs",
        "-i/--ignore-dependencies has no effect without -t/--task-regex",
    ]


def test_help_reads_like_the_airflow_cli():
    text = build_parser().format_help()
    assert text.startswith("usage: backfill")
    for part in (
        "dates (a window, one date, or a list):",
        "what to re-run:",
        "-i, --ignore-dependencies",
        "backfill sales_pipeline -s 2024-01-01 -e 2024-10-26",
        "backfill api_ingestion_dag -s 2024-03-10 -e 2024-03-12 -t api_ingestion_task -i --reset-dagruns",
        "backfill data_transformation_dag -s 2024-06-05 --reset-dagruns",
    ):
        assert part in text


def test_the_command_imports_neither_airflow_nor_requests():
    code = (
        "import importlib, pkgutil, sys, include.cli\n"
        "for m in pkgutil.iter_modules(include.cli.__path__, 'include.cli.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "[]"


# --- where Airflow is --------------------------------------------------------------------------

URIS = {
    "plain": ("http://admin:secret@localhost:8080", ("http://localhost:8080", "admin", "secret")),
    "quoted password": (
        "http://ada:p%40ss%3Aw%2Fd@af.example.com:8080",
        ("http://af.example.com:8080", "ada", "p@ss:w/d"),
    ),
    "https scheme": ("https://u:p@af.example.com", ("https://af.example.com", "u", "p")),
    "https as the schema (path)": (
        "http://u:p@af.example.com:443/https",
        ("https://af.example.com:443", "u", "p"),
    ),
    "no credentials": ("http://localhost:8080", ("http://localhost:8080", None, None)),
    "a whole URL as the host": (
        "http://u:p@https%3A%2F%2Faf.example.com%2F",
        ("https://af.example.com", "u", "p"),
    ),
    "IPv6": ("http://u:p@[::1]:8080", ("http://[::1]:8080", "u", "p")),
    "JSON form": (
        '{"conn_type": "http", "host": "localhost", "port": 8080, "login": "u", "password": "p"}',
        ("http://localhost:8080", "u", "p"),
    ),
}


@pytest.mark.parametrize("name", list(URIS), ids=list(URIS))
def test_connection_uri_gives_url_and_credentials(name):
    uri, (url, username, password) = URIS[name]
    settings = parse_connection_uri(uri)
    assert (settings.url, settings.username, settings.password) == (url, username, password)


@pytest.mark.parametrize(
    "uri",
    [
        "admin:s3cr3t-pw@localhost",
        "http://admin:s3cr3t-pw@localhost:port",
        '{"login": "a", "password": "s3cr3t-pw"}',
    ],
    ids=["no scheme", "bad port", "JSON without host"],
)
def test_a_bad_connection_is_refused_without_repeating_it(uri):
    with pytest.raises(UsageError) as info:
        parse_connection_uri(uri, "AIRFLOW_CONN_AIRFLOW_API")
    assert "AIRFLOW_CONN_AIRFLOW_API" in str(info.value)
    assert "s3cr3t-pw" not in str(info.value)


CONN = {"AIRFLOW_CONN_AIRFLOW_API": "http://conn-user:conn-pw@conn-host:8080"}
SOURCES = {
    "nothing: the default URL": ({}, {}, (DEFAULT_API_URL, None, None)),
    "the connection": ({}, CONN, ("http://conn-host:8080", "conn-user", "conn-pw")),
    "BACKFILL_API_* over the connection": (
        {},
        {
            **CONN,
            "BACKFILL_API_URL": "http://env-host:9090",
            "BACKFILL_API_USERNAME": "env-user",
            "BACKFILL_API_PASSWORD": "env-pw",
        },
        ("http://env-host:9090", "env-user", "env-pw"),
    ),
    "flags over everything": (
        {"url": "http://flag-host:1", "username": "flag-user", "password": "flag-pw"},
        {**CONN, "BACKFILL_API_URL": "http://env-host:9090", "BACKFILL_API_PASSWORD": "env-pw"},
        ("http://flag-host:1", "flag-user", "flag-pw"),
    ),
    "the connection's credentials never go to another URL": (
        {"url": "http://elsewhere:8080"},
        CONN,
        ("http://elsewhere:8080", None, None),
    ),
    "the connection's credentials with the same URL given as a flag": (
        {"url": "http://conn-host:8080"},
        CONN,
        ("http://conn-host:8080", "conn-user", "conn-pw"),
    ),
    "a flag overrides only the password": (
        {"password": "flag-pw"},
        CONN,
        ("http://conn-host:8080", "conn-user", "flag-pw"),
    ),
    "credentials in --api-url": ({"url": "http://u:p@flag-host:1"}, CONN, ("http://flag-host:1", "u", "p")),
    "BACKFILL_API_CONN_ID names another connection": (
        {},
        {**CONN, "BACKFILL_API_CONN_ID": "other_api", "AIRFLOW_CONN_OTHER_API": "http://o:opw@other:1"},
        ("http://other:1", "o", "opw"),
    ),
}


@pytest.mark.parametrize("name", list(SOURCES), ids=list(SOURCES))
def test_where_airflow_is_first_found_wins(name):
    flags, env, (url, username, password) = SOURCES[name]
    settings = api_settings(flags.get("url"), flags.get("username"), flags.get("password"), env)
    assert (settings.url, settings.username, settings.password) == (url, username, password)


def test_settings_repr_hides_the_password():
    text = repr(ApiSettings("http://h:1", "ada", "s3cr3t-pw"))
    assert "ada" in text and "s3cr3t-pw" not in text


def test_redact_hides_plain_and_url_quoted_passwords():
    assert redact("login p@ss failed, url ...p%40ss...", "p@ss") == "login *** failed, url ...***..."
    assert redact("nothing to hide", None) == "nothing to hide"


def test_a_missing_password_off_a_terminal_exits_2_naming_where_to_put_it(monkeypatch, capsys):
    for var in (
        "AIRFLOW_CONN_AIRFLOW_API",
        "BACKFILL_API_URL",
        "BACKFILL_API_PASSWORD",
        "BACKFILL_API_CONN_ID",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO())
    assert main(["sales", "-s", "2024-01-01", "--username", "ada"]) == EXIT_USAGE
    assert "BACKFILL_API_PASSWORD" in capsys.readouterr().err


def test_ui_link_quotes_the_run_id():
    assert ui_link("http://h:1", "manual__2024-01-01T00:00:00+00:00") == (
        "http://h:1/dags/backfill_controller/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00"
    )


# --- progress ----------------------------------------------------------------------------------


def backfill(phase: str | None, state: str | None = "running", **tally: int) -> dict[str, Any]:
    """One backfill as ``GET /backfill-controller/api/backfills/{run_id}`` answers (the parts read)."""
    answer: dict[str, Any] = {"run_id": "manual__1", "state": state, "phase": phase}
    if tally:
        answer["progress"] = {"tally": Counts(**tally).to_dict()}
    return answer


PROGRESS = {
    "not created yet": (backfill(None, None), Progress("queued")),
    "queued": (backfill("queued", "queued"), Progress("queued")),
    "planning": (backfill("planning"), Progress("planning")),
    "planned, nothing started yet": (
        backfill("running", dates=3, acting=2, pending=2, skipped=1),
        Progress("running", dates=3, to_run=2, skipped=1),
    ),
    "queued and running runs are running dates": (
        backfill("running", dates=4, acting=4, queued=1, running=1, succeeded=1, pending=1),
        Progress("running", dates=4, to_run=4, done=1, running=2),
    ),
    "done, failed (trigger failed included), cancelled": (
        backfill("running", dates=4, acting=4, succeeded=1, failed=2, cancelled=1),
        Progress("running", dates=4, to_run=4, done=1, failed=2, cancelled=1),
    ),
    "cancelling: runs still finishing": (
        backfill("cancelling", "failed", dates=3, acting=3, running=1, cancelled=2),
        Progress("cancelling", dates=3, to_run=3, running=1, cancelled=2),
    ),
    "cancelled": (
        backfill("cancelled", "failed", dates=3, acting=3, succeeded=1, cancelled=2),
        Progress("finished", dates=3, to_run=3, done=1, cancelled=2),
    ),
    "succeeded": (
        backfill("succeeded", "success", dates=3, acting=2, succeeded=2, skipped=1),
        Progress("finished", dates=3, to_run=2, done=2, skipped=1),
    ),
    "failed": (
        backfill("failed", "failed", dates=2, acting=2, succeeded=1, failed=1),
        Progress("finished", dates=2, to_run=2, done=1, failed=1),
    ),
    "dry run, finished": (
        backfill("planned", "success", dates=2, planned=1, skipped=1),
        Progress("dry run", dates=2, skipped=1),
    ),
    "nothing to run: every date skipped": (
        backfill("succeeded", "success", dates=2, skipped=2),
        Progress("finished", dates=2, skipped=2),
    ),
    "finished before planning (refused)": (backfill("failed", "failed"), Progress("finished")),
    "a tally from a newer server: unknown counts ignored": (
        {"phase": "running", "progress": {"tally": {"dates": 1, "acting": 1, "running": 1, "paused": 3}}},
        Progress("running", dates=1, to_run=1, running=1),
    ),
    "an estimated end": (
        {
            **backfill("running", dates=2, acting=2, running=1, pending=1),
            "eta": {"end": "2026-01-01T08:12:30+00:00", "remaining_seconds": 750, "basis": "finished_runs"},
        },
        Progress("running", dates=2, to_run=2, running=1, eta=750.0),
    ),
    "no estimate": (
        {**backfill("running", dates=2, acting=2, pending=2), "eta": None},
        Progress("running", dates=2, to_run=2),
    ),
    "an estimate without its time left": (
        {**backfill("running", dates=1, acting=1, pending=1), "eta": {"remaining_seconds": None}},
        Progress("running", dates=1, to_run=1),
    ),
}


@pytest.mark.parametrize("name", list(PROGRESS), ids=list(PROGRESS))
def test_progress_counts_dates_as_the_backfills_page_does(name):
    given, expected = PROGRESS[name]
    assert progress_of(given) == expected


def test_every_phase_reads_as_a_progress_line():
    for phase in Phase:
        progress = progress_of(backfill(phase.value, dates=1, acting=1, running=1))
        assert format_progress(progress, 1).endswith("0:00:01")


LINES = {
    "bar": (
        Progress("running", dates=12, to_run=10, done=4, failed=1, running=3, skipped=2),
        "[##########----------]  5/10 dates  done 4  failed 1  running 3  waiting 2  skipped 2  0:01:05",
    ),
    "cancelled shown when any": (
        Progress("finished", dates=4, to_run=4, done=1, failed=1, cancelled=2),
        "[####################]  4/4 dates  done 1  failed 1  running 0  waiting 0  cancelled 2  0:01:05",
    ),
    "estimated time left": (
        Progress("running", dates=10, to_run=10, done=4, running=2, eta=3725.9),
        "[########------------]  4/10 dates  done 4  failed 0  running 2  waiting 4  ETA 1:02:05  0:01:05",
    ),
    "planning": (Progress("planning"), "planning...  0:01:05"),
    "finished without a plan (refused)": (Progress("finished"), "finished without a plan  0:01:05"),
    "dry run": (Progress("dry run", dates=3, skipped=1), "dry run: 3 dates planned, 1 skipped  0:01:05"),
    "nothing to run": (
        Progress("finished", dates=3, skipped=3),
        "nothing to run: 3 dates planned, 3 skipped  0:01:05",
    ),
}


@pytest.mark.parametrize("name", list(LINES), ids=list(LINES))
def test_progress_line(name):
    progress, line = LINES[name]
    assert format_progress(progress, 65.2) == line


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_off_a_terminal_lines_are_printed_on_change_at_most_every_few_seconds():
    stream, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(stream, tty=False, every=5, heartbeat=60, clock=clock)
    one, two, three = (Progress("running", to_run=3, done=n) for n in (1, 2, 3))
    printer.show(one, 0)  # first: printed
    clock.now = 2
    printer.show(two, 2)  # changed, but too soon
    clock.now = 6
    printer.show(two, 6)  # changed since the last printed line, 6 s later: printed
    clock.now = 30
    printer.show(two, 30)  # unchanged: not printed
    clock.now = 67
    printer.show(two, 67)  # unchanged, but a minute passed: printed
    clock.now = 68
    printer.close(three, 68)  # the end is always printed
    lines = stream.getvalue().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["1/3 dates", "2/3 dates", "2/3 dates", "3/3 dates"]
    assert "\r" not in stream.getvalue()


def test_off_a_terminal_a_new_estimate_alone_prints_no_line():
    stream, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(stream, tty=False, every=5, heartbeat=60, clock=clock)
    for second, eta in ((0, 300.0), (10, 290.0), (20, 275.0)):
        clock.now = second
        printer.show(Progress("running", to_run=3, done=1, running=2, eta=eta), second)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "ETA 0:05:00" in lines[0]


def test_off_a_terminal_the_end_is_not_repeated_when_only_the_clock_moved():
    stream, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(stream, tty=False, clock=clock)
    printer.show(Progress("running", dates=2, to_run=2, done=2), 20)
    clock.now = 3
    printer.close(Progress("finished", dates=2, to_run=2, done=2), 23)
    assert len(stream.getvalue().splitlines()) == 1


def test_on_a_terminal_the_line_is_redrawn_in_place():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, tty=True, columns=40, clock=Clock())
    printer.show(Progress("running", to_run=1, running=1), 2)
    printer.show(Progress("planning"), 1)
    printer.close(Progress("finished", to_run=1, done=1), 3)
    first, second, last = stream.getvalue().split("\r")[1:]
    assert len(first) == 39  # cut to the terminal's width, so \r returns to its start
    assert second.startswith("planning...") and len(second) == 39  # padded over the longer line
    assert last.endswith("\n") and stream.getvalue().count("\n") == 1


class FakeApi:
    """The answers :func:`follow` reads: the backfill, poll after poll, then the report XCom."""

    def __init__(self, answers: list[dict[str, Any]], report: Any) -> None:
        self.answers = answers
        self.report = report
        self.polled: list[str] = []
        self.xcoms: list[tuple[str, ...]] = []

    def backfill(self, run_id: str) -> dict[str, Any]:
        self.polled.append(run_id)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        self.xcoms.append((dag_id, run_id, task_id, key))
        return self.report


REPORT = {
    "dag_id": "sales",
    "dry_run": False,
    "success": True,
    "counts": {"dates": 1, "triggered": 1, "succeeded": 1, "failed": 0},
    "dates": [
        {
            "logical_date": "2024-01-01T00:00:00+00:00",
            "action": "triggered",
            "state": "success",
            "run_id": "r1",
            "why": "no run yet",
        }
    ],
}


def test_follow_polls_the_backfill_until_its_run_ends_then_prints_the_report():
    api = FakeApi(
        [
            backfill("queued", "queued"),
            backfill("running", dates=1, acting=1, running=1),
            backfill("succeeded", "success", dates=1, acting=1, succeeded=1),
        ],
        REPORT,
    )
    out, err = io.StringIO(), io.StringIO()

    assert follow(api, "manual__1", {"dag_id": "sales"}, 0, out=out, err=err) == EXIT_SUCCESS

    assert api.polled == ["manual__1"] * 3
    assert api.xcoms == [(CONTROLLER_DAG_ID, "manual__1", "report", "return_value")]
    assert "SUCCESS: 1 dates of sales" in out.getvalue()
    assert "1/1 dates  done 1" in err.getvalue().splitlines()[-1]


def test_follow_fails_when_the_report_says_so_or_is_missing():
    ended = [backfill("failed", "failed", dates=1, acting=1, failed=1)]
    out, err = io.StringIO(), io.StringIO()

    failed = follow(FakeApi(ended, {**REPORT, "success": False}), "m", {}, 0, out=out, err=err)
    missing = follow(FakeApi(ended, None), "m", {}, 0, out=out, err=err)

    assert failed == missing == EXIT_FAILED
    assert "ended failed without a report" in err.getvalue()


# --- older runbooks: -D DATE and underscore spellings ------------------------------------------


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


def _long_options(parser) -> list[tuple[str, Any]]:
    return [
        (option, action)
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and "-" in option[2:]
    ]


PARSERS = {"backfill": (build_parser, ["sales"]), "status": (build_status_parser, ["manual__1"])}
PARSERS["list"] = (build_list_parser, [])
LONG_OPTIONS = [
    (name, option) for name, (build, _) in PARSERS.items() for option, _ in _long_options(build())
]


@pytest.mark.parametrize(("command", "option"), LONG_OPTIONS, ids=[f"{c} {o}" for c, o in LONG_OPTIONS])
def test_every_long_option_takes_its_underscore_spelling(command, option):
    build, base = PARSERS[command]
    action = dict(_long_options(build()))[option]
    value = [] if action.nargs == 0 else [str(action.choices[0]) if action.choices else "2"]
    underscored = "--" + option[2:].replace("-", "_")

    hyphens = build().parse_args([*base, option, *value])
    assert build().parse_args([*base, underscored, *value]) == hyphens
    if value:
        assert build().parse_args([*base, f"{underscored}={value[0]}"]) == hyphens
    assert hyphens != build().parse_args(base)  # the option was really given


def test_all_three_commands_have_long_options_to_respell():
    assert {command for command, _ in LONG_OPTIONS} == {"backfill", "status", "list"}
    assert ("backfill", "--treat-dag-id-as-regex") in LONG_OPTIONS  # legacy flags too


def test_only_option_names_are_respelled_never_values():
    args = build_parser().parse_args(
        [
            "-s",
            "2024-01-01",
            "--task_regex=load_x",
            "-c",
            '{"full_load": "--dry_run"}',
            "--reason",
            "--dry_run was not enough",
            "--",
            "my_dag_id",
        ]
    )
    assert (args.dag_id, args.task_regex, args.conf) == ("my_dag_id", "load_x", '{"full_load": "--dry_run"}')
    assert (args.reason, args.dry_run) == ("--dry_run was not enough", False)


def test_abbreviations_work_in_either_spelling():
    args = build_parser().parse_args(["sales", "--start", "2024-01-01", "--reset_dag", "--dry-r"])
    assert (args.start_date, args.reset_dagruns, args.dry_run) == ("2024-01-01", True, True)


def test_an_unknown_option_is_named_as_typed(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sales", "-s", "2024-01-01", "--reset_everything"])
    assert "unrecognized arguments: --reset_everything" in capsys.readouterr().err


def test_help_lists_each_option_once_and_says_underscores_work():
    for build, _ in PARSERS.values():
        parser = build()
        text = parser.format_help()
        before_epilog = text[: text.index(parser.epilog.splitlines()[0])]
        assert "--api-url URL" in before_epilog and re.search(r"--[a-z]+_", before_epilog) is None
        assert text.count("underscore spelling") == 1 and "underscore spelling" in parser.epilog


# --- sub-commands ------------------------------------------------------------------------------

COMMANDS = {
    "status RUN_ID": (["status", "manual__2024-01-01T00:00:00+00:00"], "status"),
    "status with options": (["status", "--api-url", "http://h:1", "r", "-v"], "status"),
    "status alone (its parser says RUN_ID is missing)": (["status"], "status"),
    "status --help": (["status", "--help"], "status"),
    "list": (["list"], "list"),
    "list with filters": (["list", "--dag-id", "sales", "--state", "failed", "--limit", "5"], "list"),
    "list with underscore filters": (["list", "--dag_id", "sales", "--offset", "20"], "list"),
    "a DAG named list, with dates": (["list", "-s", "2024-01-01", "-e", "2024-01-02"], "backfill"),
    "a DAG named status, -D": (["status", "-D", "2024-01-01"], "backfill"),
    "a DAG named status, --dates=": (["status", "--dates=2024-01-01"], "backfill"),
    "a DAG named status, --start_date": (["status", "--start_date", "2024-01-01"], "backfill"),
    "a DAG named list, an abbreviation": (["list", "--end", "2024-01-01"], "backfill"),
    "a DAG named list, grouped short flags": (["list", "-Bs", "2024-01-01"], "backfill"),
    "a DAG named list after the flags": (["-s", "2024-01-01", "list"], "backfill"),
    "a DAG named list, a bad flag value": (["list", "-s", "2024-01-01", "--chunk-size", "0"], "backfill"),
    "any other DAG": (["sales", "-s", "2024-01-01"], "backfill"),
    "nothing": ([], "backfill"),
}


@pytest.mark.parametrize("name", list(COMMANDS), ids=list(COMMANDS))
def test_status_and_list_are_sub_commands_unless_dates_are_given(name):
    argv, command = COMMANDS[name]
    assert command_of(argv) == command


def test_a_dag_named_like_a_sub_command_is_backfilled_as_before():
    assert conf("status", "-s", "2024-01-01") == {"dag_id": "status", "dates": ["2024-01-01"]}
    assert conf("list", "--dates", "2024-01-01") == {"dag_id": "list", "dates": ["2024-01-01"]}


def test_the_help_documents_the_sub_commands_and_the_rule():
    text = build_parser().format_help()
    assert "backfill status RUN_ID" in text and "backfill list" in text
    assert "unless the command line gives dates" in text
    status = build_status_parser().format_help()
    for code in (
        "0 the backfill succeeded",
        "1 it failed or was cancelled",
        "3 it has not finished",
        "4 Airflow",
    ):
        assert code in status


@pytest.mark.parametrize("phase", list(Phase), ids=[p.value for p in Phase])
def test_status_exits_with_what_the_phase_says(phase):
    expected = {
        Phase.SUCCEEDED: EXIT_SUCCESS,
        Phase.PLANNED: EXIT_SUCCESS,
        Phase.FAILED: EXIT_FAILED,
        Phase.CANCELLED: EXIT_FAILED,
    }.get(phase, EXIT_STILL_RUNNING)
    assert status_exit_code(phase.value) == expected


def page_backfill(run_id: str = "manual__1", **changes: Any) -> dict[str, Any]:
    """One backfill as ``GET /backfill-controller/api/backfills[/{run_id}]`` answers it."""
    cells = [
        {
            "logical_date": f"2024-01-0{day}T00:00:00+00:00",
            "run_id": f"backfill__2024-01-0{day}",
            "action": action,
            "state": state,
            "why": why,
            "run_state": state,
            "run_exists": True,
        }
        for day, action, state, why in (
            (1, "triggered", "success", "no run yet"),
            (2, "cleared", "failed", "run failed"),
            (3, "skipped", "skipped", "has a successful run"),
        )
    ]
    tally = Counts(dates=3, acting=2, succeeded=1, failed=1, skipped=1)
    answer = {
        "run_id": run_id,
        "state": "failed",
        "phase": "failed",
        "start_date": "2026-01-01T08:00:00+00:00",
        "end_date": "2026-01-01T08:05:00+00:00",
        "triggered_by": "ada",
        "target_dag_id": "sales",
        "window": {"start_date": "2024-01-01", "end_date": "2024-01-03", "dates": None},
        "reason": "late files",
        "dry_run": False,
        "reprocess": "failed",
        "error": None,
        "planned": True,
        "visible": True,
        "progress": {"dates": 3, "acting": 2, "finished": 2, "counts": {}, "tally": tally.to_dict()},
        "cells": cells,
    }
    return {**answer, **changes}


def test_status_shows_phase_request_counts_and_every_date():
    lines = format_status(page_backfill()).splitlines()
    assert lines[0] == "backfill manual__1: failed"
    header = "\n".join(lines[1 : lines.index("")])
    for part in ("target        sales", "window        2024-01-01..2024-01-03", "reason        late files"):
        assert part in header
    assert "triggered by  ada" in header
    assert "dates         3 dates, 2/2 finished: succeeded 1, failed 1, skipped 1" in header
    table = lines[lines.index("") + 1 :]
    assert table[0].split() == ["logical_date", "action", "state", "run_id", "why"]
    assert table[2].split()[:4] == ["2024-01-02T00:00:00+00:00", "cleared", "failed", "backfill__2024-01-02"]
    assert table[2].endswith("run failed")


def test_status_of_a_backfill_before_its_plan_or_of_a_hidden_target():
    queued = format_status(page_backfill(phase="queued", planned=False, cells=[], window={}))
    assert queued.splitlines()[0] == "backfill manual__1: queued" and "logical_date" not in queued
    hidden = format_status(page_backfill(visible=False, planned=False, cells=[], window={}))
    assert "no read access to the target DAG" in hidden and "dates         " not in hidden


def test_list_shows_one_line_per_backfill():
    dry_run = page_backfill(
        "manual__2",
        phase="planned",
        dry_run=True,
        triggered_by=None,
        window={"dates": 2, "first_date": "2024-01-01T00:00:00Z", "last_date": "2024-01-02T00:00:00Z"},
        progress={"dates": 2, "acting": 0, "finished": 0},
    )
    dry_run.pop("cells")  # the list sums backfills up without their dates
    page = {"total": 2, "offset": 0, "backfills": [dry_run, page_backfill()]}
    lines = format_list(page).splitlines()
    assert lines[0].split() == ["run_id", "phase", "target", "window", "finished", "triggered_by"]
    assert lines[1].split() == [
        *("manual__2", "planned", "sales", "2", "dates", "(2024-01-01..2024-01-02)", "2", "planned", "-")
    ]
    assert lines[2].split() == ["manual__1", "failed", "sales", "2024-01-01..2024-01-03", "2/2", "ada"]
    assert format_list({"total": 0, "offset": 0, "backfills": []}) == ""


class FakeControllerApi:
    """Stands in for :class:`include.backfill.client.ControllerApi` in ``run_status``/``run_list``."""

    answer: Any = None
    calls: list[tuple[str, Any]] = []

    def __init__(self, url: str, username: str, password: str, *, log: Any = None) -> None:
        self.url = url

    def login(self) -> None:
        self.calls.append(("login", self.url))

    def _answer(self, call: tuple[str, Any]) -> Any:
        self.calls.append(call)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def backfill(self, run_id: str) -> dict[str, Any]:
        return self._answer(("backfill", run_id))

    def backfills(self, **filters: Any) -> dict[str, Any]:
        return self._answer(("backfills", filters))

    def control(self, run_id: str, control: str) -> dict[str, Any]:
        return self._answer(("control", run_id, control))


@pytest.fixture
def fake_api(monkeypatch):
    import include.backfill.client as client

    monkeypatch.setattr(client, "ControllerApi", FakeControllerApi)
    monkeypatch.setattr(FakeControllerApi, "calls", [])
    for var in ("AIRFLOW_CONN_AIRFLOW_API", "BACKFILL_API_URL", "BACKFILL_API_CONN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BACKFILL_API_USERNAME", "ada")
    monkeypatch.setenv("BACKFILL_API_PASSWORD", "s3cr3t-pw")
    return FakeControllerApi


@pytest.mark.parametrize(
    ("phase", "code"),
    [("succeeded", 0), ("cancelled", 1), ("running", 3)],
    ids=["done", "cancelled", "running"],
)
def test_backfill_status_prints_the_backfill_and_exits_with_its_phase(fake_api, capsys, phase, code):
    fake_api.answer = page_backfill(phase=phase)
    assert main(["status", "manual__1", "--api_url", "http://af:8080"]) == code
    assert fake_api.calls == [("login", "http://af:8080"), ("backfill", "manual__1")]
    assert capsys.readouterr().out.startswith(f"backfill manual__1: {phase}\n")


def test_backfill_status_of_no_backfill_exits_2_and_unreachable_exits_4(fake_api, capsys):
    from include.backfill.client import ApiError

    fake_api.answer = ApiError("GET ... -> HTTP 404: no backfill has the run id 'x'", 404)
    assert main(["status", "x"]) == EXIT_USAGE
    fake_api.answer = ApiError("cannot reach Airflow at http://localhost:8080", transient=True)
    assert main(["status", "x"]) == EXIT_STATUS_UNREACHABLE != EXIT_STILL_RUNNING
    err = capsys.readouterr().err
    assert "no backfill has the run id 'x'" in err and "cannot reach Airflow" in err


def test_backfill_list_passes_the_filters_and_prints_a_line_each(fake_api, capsys):
    fake_api.answer = {"total": 41, "offset": 20, "limit": 20, "backfills": [page_backfill()]}
    argv = ["list", "--dag_id", "sales", "--state", "failed", "--limit", "20", "--offset", "20"]
    assert main(argv) == EXIT_SUCCESS
    assert fake_api.calls[1] == (
        "backfills",
        {"dag_id": "sales", "state": "failed", "limit": 20, "offset": 20},
    )
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith("manual__1  failed  sales")
    assert err.strip() == "backfills 21-21 of 41; next: --offset 21"


@pytest.mark.parametrize(
    "argv",
    [["--limit", "0"], ["--limit", "201"], ["--offset", "-1"], ["--state", "done"], ["--dag-id", "a b"]],
    ids=["limit 0", "limit over 200", "negative offset", "not a phase", "not a dag_id"],
)
def test_backfill_list_refuses_bad_filters_with_exit_2(fake_api, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["list", *argv])
    assert info.value.code == EXIT_USAGE
    assert argv[0] in capsys.readouterr().err
    assert fake_api.calls == []


def test_list_footer_says_what_is_shown_and_how_to_see_more():
    assert list_footer({"total": 3, "offset": 0, "backfills": [{}] * 3}) == "backfills 1-3 of 3"
    assert list_footer({"total": 3, "offset": 5, "backfills": []}) == "no backfills at --offset 5, of 3"


def test_the_client_lists_backfills_with_the_filters_as_query_parameters():
    from include.backfill.client import ControllerApi

    class Response:
        status_code = 200

        def json(self) -> dict[str, Any]:
            return {"total": 0, "backfills": []}

    class Session:
        headers = {"Authorization": "Bearer t"}
        calls: list[tuple[str, str, Any]] = []

        def request(self, method: str, url: str, **kwargs: Any) -> Response:
            self.calls.append((method, url, kwargs.get("params")))
            return Response()

    session = Session()
    api = ControllerApi("http://af:8080/", "ada", "pw", session=session)  # type: ignore[arg-type]
    assert api.backfills() == {"total": 0, "backfills": []}
    api.backfills(dag_id="sales", state="failed", limit=5, offset=10)
    assert session.calls == [
        ("GET", "http://af:8080/backfill-controller/api/backfills", {"limit": 50, "offset": 0}),
        (
            "GET",
            "http://af:8080/backfill-controller/api/backfills",
            {"limit": 5, "offset": 10, "dag_id": "sales", "state": "failed"},
        ),
    ]


@pytest.mark.parametrize(
    ("command", "control"),
    [("pause", "pause"), ("resume", "resume"), ("cancel", "cancel"), ("rerun-failed", "rerun_failed")],
)
def test_each_control_is_a_sub_command_that_posts_it(fake_api, capsys, command, control):
    assert command_of([command, "manual__1"]) == command
    assert command_of([command, "-s", "2024-01-01"]) == "backfill"  # a DAG named so, backfilled
    fake_api.answer = {"run_id": "manual__1", "phase": "paused", "dag_run_id": "manual__2", "dates": 2}
    assert main([command, "manual__1", "--api_url", "http://af:8080"]) == EXIT_SUCCESS
    assert fake_api.calls[1] == ("control", "manual__1", control)
    out = capsys.readouterr().out
    assert out.startswith("started manual__2" if control == "rerun_failed" else "backfill manual__1: paused")


@pytest.mark.parametrize(
    ("status", "code"),
    [(409, EXIT_FAILED), (403, EXIT_FAILED), (404, EXIT_USAGE), (None, EXIT_UNREACHABLE)],
    ids=["does not fit the phase", "no right", "no such backfill", "unreachable"],
)
def test_a_refused_control_says_why_and_exits_with_what_refused_it(fake_api, capsys, status, code):
    from include.backfill.client import ApiError

    message = "POST ... -> HTTP 409: the backfill is succeeded: only a running backfill can be paused"
    fake_api.answer = ApiError(message, status, transient=status is None)
    assert main(["pause", "manual__1"]) == code
    assert message in capsys.readouterr().err


def test_the_control_help_documents_each_control_and_its_exit_status():
    from include.cli.commands import build_control_parser

    text = build_control_parser("pause").format_help()
    for words in ("pause", "resume", "cancel", "rerun-failed", "0 done", "1 refused", "3 Airflow"):
        assert words in text
    assert "backfill pause RUN_ID" in build_parser().format_help()


def test_status_shows_the_eta_of_a_running_backfill_and_its_history():
    history = [
        {"action": "pause", "by": "ada", "at": "2026-01-01T08:01:00+00:00", "detail": None},
        {"action": "rerun_failed", "by": "bo", "at": "2026-01-01T09:00:00+00:00", "detail": "manual__2"},
    ]
    eta = {"end": "2026-01-01T08:30:00+00:00", "remaining_seconds": 750.0, "basis": "finished_runs"}
    text = format_status(page_backfill(phase="running", eta=eta, history=history))
    assert "ETA           2026-01-01 08:30:00 UTC (0:12:30 left)" in text
    assert "  2026-01-01 08:01:00  pause by ada" in text
    assert "  2026-01-01 09:00:00  rerun_failed by bo -> manual__2" in text
