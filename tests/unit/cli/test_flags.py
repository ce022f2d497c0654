"""Specification of :mod:`backfill_controller.cli.flags`: the command lines, their ``--help``, the underscore
spellings and which command an argument list runs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from backfill_controller.cli.common import EXIT_USAGE
from backfill_controller.cli.flags import (
    LEGACY_FLAGS,
    build_control_parser,
    build_list_parser,
    build_parser,
    build_status_parser,
    command_of,
)


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


def test_every_legacy_flag_is_accepted_by_the_parser_and_documented():
    help_text = build_parser().format_help()
    for flag in LEGACY_FLAGS:
        assert flag.flags[-1] in help_text
        assert ("refused: " if flag.refused else "ignored: ") + flag.note.split()[0] in help_text


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


# --- underscore spellings --------------------------------------------------------------------


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


# --- sub-commands ----------------------------------------------------------------------------


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


def test_the_control_help_documents_each_control_and_its_exit_status():
    text = build_control_parser("pause").format_help()
    for words in ("pause", "resume", "cancel", "rerun-failed", "0 done", "1 refused", "3 Airflow"):
        assert words in text
    assert "backfill pause RUN_ID" in build_parser().format_help()
