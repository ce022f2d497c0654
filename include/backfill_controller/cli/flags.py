"""The ``backfill`` command lines: Airflow 2's ``airflow dags backfill`` flags and the
sub-commands' (``status``, ``list`` and the controls), each long option also in its underscore
spelling (:func:`hyphenated`), and which command an argument list runs (:func:`command_of`).

The keys of the request that one flag sets as given are declared with their flag in
:data:`backfill_controller.domain.keys.KEYS`; :mod:`backfill_controller.cli.conf` turns a parsed
command line into the request's conf.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from backfill_controller.cli.connection import DEFAULT_API_URL
from backfill_controller.cli.help import (
    CONTROL_DESCRIPTION,
    DESCRIPTION,
    EPILOG,
    LIST_DESCRIPTION,
    STATUS_DESCRIPTION,
    UNDERSCORES_ACCEPTED,
)
from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.keys import KEY, KEYS
from backfill_controller.domain.request import DAG_ID_PATTERN
from backfill_controller.domain.state import Phase

DEFAULT_POLL_INTERVAL = 3.0
#: The first argument that names a sub-command (see :func:`command_of`).
SUBCOMMANDS = ("status", "list", "pause", "resume", "cancel", "rerun-failed")
#: The sub-commands that operate a backfill, and the control each applies.
CONTROLS = {"pause": "pause", "resume": "resume", "cancel": "cancel", "rerun-failed": "rerun_failed"}
#: Most backfills one ``GET .../api/backfills`` answers.
MAX_PAGE = 200


# --------------------------------------------------------------------------- underscore spellings


def hyphenated(argv: Sequence[str], long_options: Collection[str], allow_abbrev: bool = True) -> list[str]:
    """``argv`` with each long option given in its underscore spelling (Airflow 1.10's
    ``--reset_dagruns``) respelled with hyphens, as the parser knows it.

    Only a token that names an option once respelled (exactly, or as an abbreviation argparse
    accepts) is changed, and only its name (before ``=``): never a value (a value starting with
    ``--`` is an option to argparse anyway, unless it holds a space, and then it names no option),
    and nothing after ``--``.

    >>> hyphenated(["my_dag", "--reset_dagruns", "-t", "load_x", "--task_regex=a_b", "--x_y"],
    ...            ["--reset-dagruns", "--task-regex"])
    ['my_dag', '--reset-dagruns', '-t', 'load_x', '--task-regex=a_b', '--x_y']
    >>> hyphenated(["--reason", "--dry_run now", "--", "--dry_run"], ["--reason", "--dry-run"])
    ['--reason', '--dry_run now', '--', '--dry_run']
    """
    respelled: list[str] = []
    for position, token in enumerate(argv):
        if token == "--":
            return respelled + list(argv[position:])
        name, equals, value = token.partition("=")
        if name.startswith("--") and "_" in name:
            spelled = "--" + name[2:].replace("_", "-")
            if spelled in long_options or (
                allow_abbrev and any(option.startswith(spelled) for option in long_options)
            ):
                token = spelled + equals + value
        respelled.append(token)
    return respelled


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that also takes the underscore spelling of every long option
    (``--reset_dagruns`` for ``--reset-dagruns``): the command line is respelled first
    (:func:`hyphenated`), so the parser, its ``--help`` and its errors know one spelling."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = sys.argv[1:] if args is None else args
        options = [option for option in self._option_string_actions if option.startswith("--")]
        return super().parse_known_args(hyphenated(argv, options, self.allow_abbrev), namespace)


# --------------------------------------------------------------------------- command line


@dataclass(frozen=True)
class LegacyFlag:
    """An ``airflow dags backfill`` flag of Airflow 2 with no equivalent here.

    ``refused`` flags stop the command (they would change what runs, so ignoring them would
    surprise); the others are accepted and have no effect. ``note`` says why, and what to do instead.
    """

    flags: tuple[str, ...]
    metavar: str | None
    refused: bool
    note: str

    @property
    def dest(self) -> str:
        return self.flags[-1].lstrip("-").replace("-", "_")


LEGACY_FLAGS: tuple[LegacyFlag, ...] = (
    LegacyFlag(("-l", "--local"), None, False, "runs go to the deployment's executor"),
    LegacyFlag(("-x", "--donot-pickle"), None, False, "Airflow 3 does not pickle DAGs"),
    LegacyFlag(("-y", "--yes"), None, False, "this command never asks for confirmation"),
    LegacyFlag(("-S", "--subdir"), "SUBDIR", False, "the target is the DAG the deployment has parsed"),
    LegacyFlag(
        ("--delay-on-limit",),
        "SECONDS",
        False,
        "the controller waits in deferrable sensors; --max-active-runs bounds the runs",
    ),
    LegacyFlag(
        ("--pool",),
        "POOL",
        True,
        "runs use each task's own pool: set `pool` on the target's tasks, "
        "or bound the runs with --max-active-runs",
    ),
    LegacyFlag(
        ("-m", "--mark-success"),
        None,
        True,
        "the controller runs the tasks; to mark a run successful use the UI or "
        'PATCH /api/v2/dags/DAG_ID/dagRuns/RUN_ID with {"state": "success"}',
    ),
    LegacyFlag(
        ("-I", "--ignore-first-depends-on-past"),
        None,
        True,
        "Airflow 3 runs have no depends_on_past override; backfill the first date alone "
        "(-s DATE) and then the rest",
    ),
    LegacyFlag(
        ("--disable-retry",),
        None,
        True,
        "retries come from the target's tasks: set retries=0 in its default_args",
    ),
    LegacyFlag(
        ("--treat-dag-as-regex", "--treat-dag-id-as-regex"),
        None,
        True,
        "one DAG per command: run `backfill` once for each DAG",
    ),
)

#: Keys whose flags apply only with -t/--task-regex.
NEEDS_TASK_REGEX = ("include_downstream", "missing_runs")


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be {least} or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def _page_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be {MAX_PAGE} or less, got {value}")
    return value


def _offset(text: str) -> int:
    return _whole_number(text, 0)


def _dag_id(text: str) -> str:
    if not DAG_ID_PATTERN.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a dag_id (letters, digits, _ . - only)")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``backfill`` command line (Airflow 2 flag names where Airflow 2 had one)."""
    parser = CommandParser(
        prog="backfill",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_backfill_arguments(parser)
    return parser


def _add_backfill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dag_id", metavar="DAG_ID", help="the DAG to backfill")
    _add_dates(parser.add_argument_group("dates (a window, one date, or a list)"))
    _add_what(parser.add_argument_group("what to re-run"))
    _add_how(parser.add_argument_group("how"))
    run = parser.add_argument_group("Airflow and output")
    _add_airflow(run)
    run.add_argument("--no-wait", action="store_true", help="print the controller's run id and exit at once")
    run.add_argument(
        "--poll-interval",
        type=_seconds,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between progress checks (default {DEFAULT_POLL_INTERVAL:g})",
    )
    _add_legacy(
        parser.add_argument_group(
            "Airflow 2 flags without an equivalent",
            "ignored ones print a note; refused ones stop the command",
        )
    )


def _add_dates(dates: argparse._ArgumentGroup) -> None:
    dates.add_argument(
        "-s",
        "--start-date",
        metavar="DATE",
        help="first logical date, inclusive: YYYY-MM-DD or ISO-8601 (naive means UTC); "
        "alone, the one date to backfill",
    )
    dates.add_argument(
        "-e", "--end-date", metavar="DATE", help="last logical date, inclusive; alone, the one date"
    )
    dates.add_argument(
        "--dates",
        action="append",
        metavar="DATE[,DATE...]",
        help="explicit logical dates instead of a window, comma-separated (repeatable); "
        "for DAGs with schedule=None, any datetimes",
    )
    dates.add_argument(
        "-D",
        dest="date",
        action="append",
        metavar="DATE",
        help="the one logical date to backfill, as older runbooks spell it: the same as -s DATE alone",
    )


def _add_what(what: argparse._ArgumentGroup) -> None:
    what.add_argument(
        "--reset-dagruns",
        action="store_true",
        help="re-run every date, also dates whose run succeeded (reprocess=all)",
    )
    what.add_argument(
        "--rerun-failed-tasks",
        action="store_true",
        help="re-run dates whose run failed, besides dates with no run (reprocess=failed)",
    )
    _add_key_flags(what, "task_regex")
    what.add_argument(
        "-i",
        "--ignore-dependencies",
        action="store_true",
        help="with -t: run only the matching tasks, not their upstream tasks (Airflow 2's -i); "
        "no effect without -t",
    )
    _add_key_flags(what, *NEEDS_TASK_REGEX)


def _add_how(how: argparse._ArgumentGroup) -> None:
    _add_key_flags(how, "run_backwards")
    how.add_argument(
        "-c",
        "--conf",
        metavar="JSON",
        help='JSON object passed as conf to every target run, e.g. \'{"mode": "full"}\'',
    )
    _add_key_flags(how, "max_active_runs", "chunk_size", "max_failed_dates")
    how.add_argument(
        "--continue-on-failures",
        action="store_true",
        help="keep going after failed dates: the default (no --max-failed-dates)",
    )
    _add_key_flags(how, "reason", "dry_run", "on_overlap", "timeout_minutes")
    how.add_argument(
        "--notify",
        metavar="NAMES",
        help="comma-separated names of the deployment's notifiers to tell at the end ('' for nobody; "
        "default: the deployment's [backfill_controller] notify)",
    )
    _add_key_flags(how, "segment_size")
    # Last, the flag of any other key that has one (the groups before this one are filled first).
    placed = {action.dest for action in how._actions}
    _add_key_flags(how, *(name for name in flag_keys() if name not in placed))


def flag_keys() -> list[str]:
    """The keys the command line sets as given, each with its own flag (:class:`Flag`)."""
    return [key.name for key in KEYS if key.flag is not None]


def flag_name(name: str) -> str:
    """How messages name the flag of key ``name``: its long spelling."""
    flag = KEY[name].flag
    assert flag is not None, name
    return flag.names[-1]


def _add_key_flags(group: argparse._ArgumentGroup, *names: str) -> None:
    """Add each key's flag as its declaration states it; the option stores into the key's name."""
    for name in names:
        key = KEY[name]
        assert key.flag is not None, name
        kind: dict[str, Any] = {"metavar": key.flag.metavar}
        if key.type == "boolean":
            kind = {"action": "store_true"}
        elif key.type == "integer":
            kind["type"] = _positive_int
        elif isinstance(key.choices, tuple) and key.choices:
            kind = {"choices": key.choices}
        group.add_argument(*key.flag.names, dest=name, help=key.flag.help, **kind)


def _add_airflow(run: argparse._ArgumentGroup) -> None:
    """Where Airflow is and who logs in: every sub-command's."""
    run.add_argument(
        "--api-url",
        metavar="URL",
        help="Airflow's base URL (env BACKFILL_API_URL, or the connection AIRFLOW_CONN_AIRFLOW_API; "
        f"default {DEFAULT_API_URL})",
    )
    run.add_argument("--username", metavar="USER", help="env BACKFILL_API_USERNAME")
    run.add_argument(
        "--password",
        metavar="PASSWORD",
        help="env BACKFILL_API_PASSWORD (safer than the command line); asked for on a terminal",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="also print every REST API call")


def _add_legacy(legacy: argparse._ArgumentGroup) -> None:
    for flag in LEGACY_FLAGS:
        verdict = "refused" if flag.refused else "ignored"
        help_text = f"{verdict}: {flag.note}"
        if flag.metavar:
            legacy.add_argument(*flag.flags, dest=flag.dest, metavar=flag.metavar, help=help_text)
        else:
            legacy.add_argument(*flag.flags, dest=flag.dest, action="store_true", help=help_text)


def build_status_parser() -> argparse.ArgumentParser:
    """``backfill status RUN_ID``: one backfill, as the Backfills page shows it."""
    return _run_id_parser("status", STATUS_DESCRIPTION)


def build_control_parser(command: str) -> argparse.ArgumentParser:
    """``backfill pause|resume|cancel|rerun-failed RUN_ID``."""
    return _run_id_parser(command, CONTROL_DESCRIPTION)


def _run_id_parser(command: str, description: str) -> argparse.ArgumentParser:
    """A sub-command that takes one backfill's run id, and how to reach Airflow."""
    parser = CommandParser(
        prog=f"backfill {command}",
        description=description,
        epilog=UNDERSCORES_ACCEPTED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_id", metavar="RUN_ID", help=f"the run id of the {CONTROLLER_DAG_ID} run")
    _add_airflow(parser.add_argument_group("Airflow and output"))
    return parser


def build_list_parser() -> argparse.ArgumentParser:
    """``backfill list``: the backfills, newest first."""
    parser = CommandParser(
        prog="backfill list",
        description=LIST_DESCRIPTION,
        epilog=UNDERSCORES_ACCEPTED,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_argument_group("which backfills")
    which.add_argument("--dag-id", type=_dag_id, metavar="DAG_ID", help="only the backfills of this DAG")
    which.add_argument(
        "--state",
        choices=[p.value for p in Phase],
        metavar="PHASE",
        help=f"only the backfills in this phase: {', '.join(p.value for p in Phase)}",
    )
    which.add_argument(
        "--limit", type=_page_size, default=20, metavar="N", help=f"at most N, up to {MAX_PAGE} (default 20)"
    )
    which.add_argument(
        "--offset", type=_offset, default=0, metavar="K", help="skip the K newest ones (default 0)"
    )
    _add_airflow(parser.add_argument_group("Airflow and output"))
    return parser


class _NotParsed(Exception):
    pass


class _Probe(CommandParser):
    """The backfill command line, parsed only to see whether it gives dates: quiet, never exits."""

    def error(self, message: str) -> NoReturn:
        raise _NotParsed(message)


def command_of(argv: Sequence[str]) -> str:
    """Which command ``argv`` runs: ``"backfill"``, or a sub-command of :data:`SUBCOMMANDS`.

    ``status`` or ``list`` first names the sub-command unless the command line gives dates: every
    backfill needs dates and no sub-command takes any, so each backfill command line means what
    it meant before the sub-commands, also for a DAG named ``status`` or ``list``.

    >>> command_of(["status", "manual__1"]), command_of(["list", "--dag-id", "sales"])
    ('status', 'list')
    >>> command_of(["list", "-s", "2024-01-01"]), command_of(["sales", "-s", "2024-01-01"])
    ('backfill', 'backfill')
    """
    if not argv or argv[0] not in SUBCOMMANDS:
        return "backfill"
    probe = _Probe(add_help=False)
    _add_backfill_arguments(probe)
    try:
        args, _ = probe.parse_known_args(argv)
    except _NotParsed:  # a backfill flag with a bad value: the backfill command says what is wrong
        return "backfill"
    if args.start_date is None and args.end_date is None and not args.dates and not args.date:
        return argv[0]
    return "backfill"
