"""Specification of the ``backfill`` command's pure parts: flags -> conf, where Airflow is, progress.

No server: :func:`main` is only run where it stops before any HTTP call (bad command lines), and
:func:`follow` reads a fake API's answers.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from include.backfill.cli import (
    CONTROLLER_DAG_ID,
    DEFAULT_API_URL,
    EXIT_FAILED,
    EXIT_SUCCESS,
    EXIT_USAGE,
    LEGACY_FLAGS,
    ApiSettings,
    Progress,
    ProgressPrinter,
    UsageError,
    api_settings,
    build_parser,
    follow,
    format_progress,
    ignored_flag_notes,
    main,
    parse_connection_uri,
    progress_of,
    redact,
    to_conf,
    ui_link,
)
from include.backfill.state import Counts, Phase

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


def test_the_module_imports_neither_airflow_nor_requests():
    code = (
        "import sys, include.backfill.cli\n"
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
