"""``backfill``: Airflow 2's ``airflow dags backfill`` command line, run by the backfill controller.

The command turns Airflow 2 style flags into the controller's conf (:func:`to_conf`), triggers
``backfill_controller`` over the REST API, shows live progress and prints the per-date table::

    backfill sales_pipeline -s 2024-01-01 -e 2024-10-26

Two sub-commands read the backfills the Backfills page shows, without starting anything::

    backfill status RUN_ID          # one backfill: phase, counts and every date
    backfill list --dag-id sales    # the backfills, newest first

Four operate one (:mod:`include.backfill.controls`)::

    backfill pause RUN_ID | resume RUN_ID | cancel RUN_ID | rerun-failed RUN_ID

Everything here except the ``run_*`` functions and :func:`main` is pure (argument parsing, the
conf, connection settings, progress arithmetic and formatting) and imports neither Airflow nor an
HTTP library, so the command starts in a fraction of a second and the parts are unit-tested
without a server. The HTTP calls live in :mod:`include.backfill.client`.

Exit status of a backfill: 0 the backfill succeeded (or the dry run was planned); 1 it failed, or
the controller refused the request; 2 the command line or the trigger was refused (nothing was
started); 3 Airflow could not be reached or refused the login; 130 interrupted (the controller
run keeps going). ``status`` and ``list`` document theirs in their ``--help``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import quote, unquote, urlsplit

from include.backfill.airflow_states import FINISHED_RUN
from include.backfill.contract import KEY, KEYS
from include.backfill.report import aligned, date_table, render_table
from include.backfill.request import DAG_ID_PATTERN, DATE_ACCEPTED, parse_datetime
from include.backfill.state import Counts, Phase

if TYPE_CHECKING:
    from include.backfill.client import ControllerApi

CONTROLLER_DAG_ID = "backfill_controller"
DEFAULT_API_URL = "http://localhost:8080"
DEFAULT_POLL_INTERVAL = 3.0
#: The first argument that names a sub-command (see :func:`command_of`).
SUBCOMMANDS = ("status", "list", "pause", "resume", "cancel", "rerun-failed")
#: The sub-commands that operate a backfill, and the control each applies.
CONTROLS = {"pause": "pause", "resume": "resume", "cancel": "cancel", "rerun-failed": "rerun_failed"}
#: Most backfills one ``GET .../api/backfills`` answers.
MAX_PAGE = 200

EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
#: ``backfill status``: the backfill has not finished (queued, planning, running or cancelling).
EXIT_STILL_RUNNING = 3
#: ``backfill status``: Airflow could not be reached or refused the login (3 means still running).
EXIT_STATUS_UNREACHABLE = 4


class UsageError(ValueError):
    """The command line asks for something the command refuses; nothing was sent to Airflow."""


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

DESCRIPTION = f"""\
Run a backfill of DAG_ID: trigger the {CONTROLLER_DAG_ID} DAG over the REST API, show its
progress, and print what happened to every logical date.

Speaks Airflow 2's `airflow dags backfill` flags. Differences:
  * -s DATE alone (no -e) backfills exactly that one logical date; it must be on the DAG's
    schedule (the error names the nearest ones). Same for -e alone and for -D DATE (older
    runbooks' spelling). -s and -e form an inclusive window of logical dates, like Airflow 2.
  * Dates that already have a run are left alone unless --reset-dagruns (re-run every date)
    or --rerun-failed-tasks (re-run dates whose run failed). Queued or running runs are never
    touched.
  * -t REGEX re-runs only the matching tasks of existing runs, and by default their upstream
    tasks too, as in Airflow 2; -i (--ignore-dependencies) runs only the matching tasks.
  * The backfill continues past failed dates (--continue-on-failures is the default); use
    --max-failed-dates 1 to stop starting new dates after the first failure.
  * --dry-run reports what would happen to each date and changes nothing.

Sub-commands, which start nothing:
  backfill status RUN_ID     one backfill: its phase, counts and every date (backfill status -h)
  backfill list [--dag-id D] [--state PHASE]   the backfills, newest first (backfill list -h)
Sub-commands that operate one backfill (backfill pause -h):
  backfill pause RUN_ID      no new date starts; runs already queued or running finish
  backfill resume RUN_ID     dates start again where it stopped
  backfill cancel RUN_ID     nothing new starts; its queued runs are marked failed
  backfill rerun-failed RUN_ID   a new backfill of exactly the dates that ended failed
A first argument naming a sub-command names it unless the command line gives dates
(-s, -e, --dates or -D): a backfill always needs dates and a sub-command takes none, so
`backfill list -s 2024-01-01` still backfills a DAG named `list`.

Airflow: --api-url/--username/--password, else BACKFILL_API_URL/BACKFILL_API_USERNAME/
BACKFILL_API_PASSWORD, else the connection URI in AIRFLOW_CONN_AIRFLOW_API
(e.g. http://admin:secret@localhost:8080), else {DEFAULT_API_URL}. The password is only
sent to POST /auth/token and never printed.

Exit status: 0 success (or dry run planned); 1 the backfill failed or the controller refused
the request; 2 bad command line or request refused at trigger (nothing started); 3 Airflow
unreachable or login refused; 130 interrupted (the controller run keeps going)."""

EPILOG = """\
examples:
  # first load of a new pipeline: every day from Jan 1 to Oct 26, 2024 (inclusive)
  backfill sales_pipeline -s 2024-01-01 -e 2024-10-26

  # re-run one task (not its upstream tasks) for a few days, even where it succeeded
  backfill api_ingestion_dag -s 2024-03-10 -e 2024-03-12 -t api_ingestion_task -i --reset-dagruns

  # re-run the one failed date of a DAG (older runbooks: -D 2024-06-05 --reset_dagruns)
  backfill data_transformation_dag -s 2024-06-05 --reset-dagruns

  # see the plan first; trigger and return at once, printing the controller's run id
  backfill sales_pipeline -s 2024-01-01 -e 2024-01-31 --dry-run
  backfill sales_pipeline --dates 2024-01-05,2024-01-10 --reason "late files" --no-wait

  # how is it going? which backfills of sales_pipeline failed?
  backfill status manual__2024-11-24T08:08:58.461667+00:00
  backfill list --dag-id sales_pipeline --state failed

Every long flag also takes its underscore spelling, as Airflow 1.10 wrote them (--reset_dagruns,
--start_date, --task_regex, --dry_run, ...); this help lists the hyphen spellings only."""

STATUS_DESCRIPTION = f"""\
Print one backfill as the Backfills page shows it: its phase, target, window and counts, then
one line per logical date (logical_date, action, state, run_id, why). RUN_ID is the run id of
the {CONTROLLER_DAG_ID} run that received the request (`backfill list` shows them). Starts nothing.

Exit status: 0 the backfill succeeded, or the dry run was planned; 1 it failed or was cancelled;
2 bad command line, or no backfill has that run id; 3 it has not finished yet (queued,
planning, running or cancelling: a script can wait while the status is 3); 4 Airflow
unreachable or login refused (not 3, so such a loop stops)."""

LIST_DESCRIPTION = f"""\
List the backfills ({CONTROLLER_DAG_ID} runs), newest first, one line each: run_id, phase, target
DAG, window, dates finished/to run (or planned, for a dry run), who triggered it. The total and
how to see the next page go to stderr. Starts nothing.

Exit status: 0 listed (also when none match); 2 bad command line; 3 Airflow unreachable or login
refused."""

CONTROL_DESCRIPTION = f"""\
Operate one backfill. RUN_ID is the run id of the {CONTROLLER_DAG_ID} run that received the
request (`backfill list` shows them).
  pause         no new date starts; runs already queued or running finish; the time paused does
                not count against its timeout_minutes
  resume        dates start again where it stopped
  cancel        as marking the controller run failed: nothing new starts, in any segment; its
                queued runs are marked failed; runs already running finish
  rerun-failed  start a new backfill of exactly the dates that ended failed (same target, task
                selection and conf; reprocess failed); prints the new run id
Each needs the rights Airflow would ask for the same change by hand (see the README).

Exit status: 0 done; 1 refused: it does not fit the backfill's phase (pause a finished one,
resume a running one), or a right is missing; 2 bad command line, or no backfill has that run
id; 3 Airflow unreachable or login refused."""

#: Keys whose flags apply only with -t/--task-regex.
NEEDS_TASK_REGEX = ("include_downstream", "missing_runs")
#: Keys whose flags :func:`_task_conf` translates; the flag of every other key sets it as given.
_TASK_KEYS = ("task_regex", *NEEDS_TASK_REGEX)

UNDERSCORES_ACCEPTED = "Every long flag also takes its underscore spelling (--dag_id, --api_url, ...)."


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _page_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be {MAX_PAGE} or less, got {value}")
    return value


def _offset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


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
    _add_key_flags(how, *(name for name in _flag_keys() if name not in placed))


def _flag_keys() -> list[str]:
    """The keys the command line sets as given, each with its own flag (:class:`Flag`)."""
    return [key.name for key in KEYS if key.flag is not None]


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


def _given(args: argparse.Namespace, flag: LegacyFlag) -> bool:
    value = getattr(args, flag.dest, None)
    return value is not None and value is not False


def ignored_flag_notes(args: argparse.Namespace) -> list[str]:
    """One note per accepted flag that has no effect."""
    notes = [
        f"{'/'.join(f.flags)} has no effect: {f.note}"
        for f in LEGACY_FLAGS
        if not f.refused and _given(args, f)
    ]
    if args.ignore_dependencies and not args.task_regex:
        notes.append("-i/--ignore-dependencies has no effect without -t/--task-regex")
    return notes


def _check_date(text: str, flag: str) -> str:
    try:
        parse_datetime(text)
    except (ValueError, TypeError, OverflowError):
        raise UsageError(f"{flag}: {text!r} is not a date; accepted: {DATE_ACCEPTED}") from None
    return text.strip()


def _explicit_dates(values: Sequence[str]) -> list[str]:
    dates = [part.strip() for value in values for part in value.split(",")]
    if not all(dates):
        raise UsageError("--dates: an empty date in the list; give dates like 2024-01-05,2024-01-10")
    seen: dict[Any, str] = {}
    for text in dates:
        _check_date(text, "--dates")
        moment = parse_datetime(text)
        if moment in seen:
            raise UsageError(f"--dates: {text!r} is the same date as {seen[moment]!r}; list each date once")
        seen[moment] = text
    return dates


def _target_conf(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"-c/--conf: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(
            f'-c/--conf: must be a JSON object like \'{{"key": "value"}}\', not a {type(value).__name__}'
        )
    return value


def _one_date(args: argparse.Namespace) -> tuple[str, str] | None:
    """The one date ``-D`` gives (with the flag to name in errors), checked alone; None without -D."""
    if not args.date:
        return None
    if len(args.date) > 1:
        raise UsageError("-D: give one date; for several dates use --dates DATE,DATE,...")
    others = [
        name
        for name, given in (
            ("-s/--start-date", args.start_date),
            ("-e/--end-date", args.end_date),
            ("--dates", args.dates),
        )
        if given
    ]
    if others:
        raise UsageError(f"-D DATE is one date: give it alone, not with {' or '.join(others)}")
    return args.date[0], "-D"


def _dates_conf(args: argparse.Namespace) -> dict[str, Any]:
    """``start_date`` and ``end_date``, or ``dates``: the window, the one date or the list asked for."""
    start, end = args.start_date, args.end_date
    one = _one_date(args)
    if args.dates:
        if start is not None or end is not None:
            raise UsageError("give either --dates or -s/--start-date and -e/--end-date, not both")
        return {"dates": _explicit_dates(args.dates)}
    if start is not None and end is not None:
        window = {
            "start_date": _check_date(start, "-s/--start-date"),
            "end_date": _check_date(end, "-e/--end-date"),
        }
        if parse_datetime(start) > parse_datetime(end):
            raise UsageError(f"-s/--start-date {start} is after -e/--end-date {end}")
        return window
    if start is not None:
        one = start, "-s/--start-date"
    elif end is not None:
        one = end, "-e/--end-date"
    if one is None:
        raise UsageError("no dates: give -s/--start-date (and -e/--end-date), or --dates")
    # Airflow 2 took a lone -s or -e as a one-date window; one explicit date says the same
    # and, unlike a window, also works for DAGs with schedule=None.
    return {"dates": [_check_date(*one)]}


def _task_conf(args: argparse.Namespace) -> dict[str, Any]:
    if not args.task_regex:
        for name in NEEDS_TASK_REGEX:
            if getattr(args, name):
                raise UsageError(f"{_flag_name(name)} only applies with -t/--task-regex")
        return {}
    conf: dict[str, Any] = {"task_regex": args.task_regex, "include_upstream": not args.ignore_dependencies}
    return conf | _as_given(args, NEEDS_TASK_REGEX)


def _check_pace(args: argparse.Namespace) -> None:
    """How many runs at once, and when to stop starting new ones: the combinations refused."""
    if (
        args.chunk_size is not None
        and args.max_active_runs is not None
        and args.chunk_size > args.max_active_runs
    ):
        raise UsageError(
            f"--chunk-size {args.chunk_size} is larger than --max-active-runs {args.max_active_runs}; "
            "a chunk is triggered at once"
        )
    if args.max_failed_dates is not None and args.continue_on_failures:
        raise UsageError("--continue-on-failures means no failure budget; drop it or --max-failed-dates")


def _as_given(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The keys among ``names`` whose flag the command line gives, set to the value given."""
    return {name: getattr(args, name) for name in names if getattr(args, name)}


def _flag_name(name: str) -> str:
    """How messages name the flag of key ``name``: its long spelling."""
    flag = KEY[name].flag
    assert flag is not None, name
    return flag.names[-1]


def to_conf(args: argparse.Namespace) -> dict[str, Any]:
    """The controller's conf for a parsed command line; only the keys the command line sets.

    Raises :class:`UsageError` naming the flags for combinations the command refuses.

    >>> to_conf(build_parser().parse_args(["sales", "-s", "2024-01-01", "-e", "2024-01-31"]))
    {'dag_id': 'sales', 'start_date': '2024-01-01', 'end_date': '2024-01-31'}
    >>> to_conf(build_parser().parse_args(["sales", "-s", "2024-06-05", "--reset-dagruns"]))
    {'dag_id': 'sales', 'dates': ['2024-06-05'], 'reprocess': 'all'}
    >>> to_conf(build_parser().parse_args(["sales", "-D", "2024-06-05", "--reset_dagruns"]))
    {'dag_id': 'sales', 'dates': ['2024-06-05'], 'reprocess': 'all'}
    """
    for flag in LEGACY_FLAGS:
        if flag.refused and _given(args, flag):
            raise UsageError(f"{'/'.join(flag.flags)} is not supported: {flag.note}")

    dag_id = args.dag_id
    if not DAG_ID_PATTERN.match(dag_id):
        raise UsageError(f"DAG_ID: {dag_id!r} is not a dag_id (letters, digits, _ . - only)")
    if dag_id == CONTROLLER_DAG_ID:
        raise UsageError(f"DAG_ID: the {CONTROLLER_DAG_ID} cannot backfill itself")
    conf: dict[str, Any] = {"dag_id": dag_id, **_dates_conf(args)}

    if args.reset_dagruns and args.rerun_failed_tasks:
        raise UsageError(
            "give one of --reset-dagruns (re-run every date) and --rerun-failed-tasks "
            "(re-run dates whose run failed), not both"
        )
    if args.reset_dagruns:
        conf["reprocess"] = "all"
    elif args.rerun_failed_tasks:
        conf["reprocess"] = "failed"
    conf.update(_task_conf(args))
    _check_pace(args)
    conf.update(_as_given(args, (name for name in _flag_keys() if name not in _TASK_KEYS)))
    if args.conf is not None:
        conf["conf"] = _target_conf(args.conf)
    if args.notify is not None:
        conf["notify"] = [n.strip() for n in args.notify.split(",") if n.strip()]
    return conf


# --------------------------------------------------------------------------- where Airflow is


@dataclass(frozen=True)
class ApiSettings:
    """Airflow's base URL and the credentials for ``POST /auth/token``. ``repr`` hides the password."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    source: str = "default"


def _base_url(scheme: str, host: str, port: int | None) -> str:
    host = unquote(host)
    if "://" in host:  # Airflow connections may hold a whole URL as the host
        return host.rstrip("/")
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def parse_connection_uri(uri: str, source: str = "connection") -> ApiSettings:
    """URL and credentials from an Airflow connection, as a URI or in Airflow's JSON form.

    Like Airflow's own REST client here, the scheme is https when the connection type or the
    schema (the URI's path) says https, else http. Errors never repeat the URI (it holds a password).

    >>> s = parse_connection_uri("http://admin:p%40ss@localhost:8080")
    >>> s.url, s.username, s.password
    ('http://localhost:8080', 'admin', 'p@ss')
    """
    text = uri.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise UsageError(f"{source}: not a connection URI or JSON connection") from None
        if not isinstance(data, dict) or not data.get("host"):
            raise UsageError(f"{source}: the JSON connection has no host")
        schema = str(data.get("schema") or "")
        scheme = "https" if "https" in (str(data.get("conn_type") or "").lower(), schema) else "http"
        port = data.get("port")
        return ApiSettings(
            url=_base_url(scheme, str(data["host"]), int(port) if port else None),
            username=data.get("login") or None,
            password=data.get("password") or None,
            source=source,
        )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise UsageError(f"{source}: not a valid URI (bad host or port)") from None
    if not parts.scheme or not parts.hostname:
        raise UsageError(f"{source}: not a URI like http://USER:PASSWORD@HOST:PORT")
    schema = unquote(parts.path.lstrip("/"))
    scheme = "https" if "https" in (parts.scheme.lower(), schema) else "http"
    return ApiSettings(
        url=_base_url(scheme, parts.hostname, port),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        source=source,
    )


def api_settings(
    url: str | None, username: str | None, password: str | None, env: Mapping[str, str]
) -> ApiSettings:
    """Where Airflow is, first found wins: flags, BACKFILL_API_* variables, the connection.

    The connection is ``AIRFLOW_CONN_<BACKFILL_API_CONN_ID or AIRFLOW_API>``, the one the
    controller's tasks use. Credentials found with one URL are never sent to another: a user or
    password from a connection (or from a URL's ``user:password@``) is used only with that URL.
    """
    conn_id = env.get("BACKFILL_API_CONN_ID") or "airflow_api"
    conn_var = f"AIRFLOW_CONN_{conn_id.upper()}"
    candidates: list[ApiSettings] = []
    for text, source in ((url, "--api-url"), (env.get("BACKFILL_API_URL"), "BACKFILL_API_URL")):
        if text:
            candidates.append(parse_connection_uri(text, source))
    if env.get(conn_var):
        candidates.append(parse_connection_uri(env[conn_var], conn_var))
    chosen = candidates[0] if candidates else ApiSettings(DEFAULT_API_URL)
    # a URI's own credentials, then those of any other source naming the same URL
    same_url = [c for c in candidates if c.url == chosen.url]
    user = (
        username
        or env.get("BACKFILL_API_USERNAME")
        or next((c.username for c in same_url if c.username), None)
    )
    secret = (
        password
        or env.get("BACKFILL_API_PASSWORD")
        or next((c.password for c in same_url if c.password), None)
    )
    return ApiSettings(url=chosen.url, username=user, password=secret, source=chosen.source)


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (and its URL-quoted form) replaced by ``***``."""
    if not secret:
        return text
    for form in {secret, quote(secret, safe="")}:
        text = text.replace(form, "***")
    return text


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class Progress:
    """Where a controller run is. Counts are dates; ``to_run`` dates are triggered or cleared."""

    phase: str  # queued | planning | running | cancelling | dry run | finished
    dates: int = 0
    to_run: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    cancelled: int = 0
    skipped: int = 0
    eta: float | None = None
    """Seconds the backfill has left, as estimated (None: no estimate)."""

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def waiting(self) -> int:
        """Dates to run that have not started yet (their chunk waits, or the trigger is on its way)."""
        return max(0, self.to_run - self.finished - self.running)


#: How the progress line names each phase of :class:`include.backfill.state.Phase`.
_SHOWN_PHASE = {Phase.QUEUED: "queued", Phase.PLANNING: "planning", Phase.PLANNED: "dry run"}


def progress_of(backfill: Mapping[str, Any]) -> Progress:
    """Progress from the Backfills page's view of one backfill (``GET .../api/backfills/{run_id}``),
    the same the page and the report show.

    >>> tally = {"dates": 3, "acting": 2, "succeeded": 1, "running": 1, "skipped": 1}
    >>> progress_of({"phase": "running", "progress": {"tally": tally}})  # doctest: +ELLIPSIS
    Progress(phase='running', dates=3, to_run=2, done=1, failed=0, running=1, cancelled=0, skipped=1, ...)
    >>> eta = {"end": "2024-01-01T10:12:30+00:00", "remaining_seconds": 750.0, "basis": "finished_runs"}
    >>> progress_of({"phase": "running", "progress": {"tally": tally}, "eta": eta}).eta
    750.0
    """
    try:
        shown = Phase(backfill.get("phase") or Phase.QUEUED)
    except ValueError:  # a phase a newer server knows
        shown = Phase.RUNNING
    fields = Counts.__dataclass_fields__
    tally = Counts(
        **{k: v for k, v in ((backfill.get("progress") or {}).get("tally") or {}).items() if k in fields}
    )
    phase = _SHOWN_PHASE.get(shown) or (
        shown.value if shown in (Phase.RUNNING, Phase.CANCELLING) else "finished"
    )
    eta = (backfill.get("eta") or {}).get("remaining_seconds")
    return Progress(
        phase,
        dates=tally.dates,
        to_run=tally.acting,
        done=tally.succeeded,
        failed=tally.failed,
        running=tally.queued + tally.running,
        cancelled=tally.cancelled,
        skipped=tally.skipped,
        eta=float(eta) if isinstance(eta, int | float) else None,
    )


def format_elapsed(seconds: float) -> str:
    """``H:MM:SS``.

    >>> format_elapsed(3725.4)
    '1:02:05'
    """
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def format_progress(progress: Progress, elapsed: float, width: int = 20) -> str:
    """One line of progress: a bar of finished dates, then done / failed / running / waiting, the
    estimated time left when there is one, and the time so far.

    >>> format_progress(Progress("running", dates=5, to_run=4, done=1, failed=1, running=2, skipped=1), 42, 8)
    '[####----]  2/4 dates  done 1  failed 1  running 2  waiting 0  skipped 1  0:00:42'
    >>> format_progress(Progress("running", dates=4, to_run=4, done=1, running=2, eta=750.4), 42, 8)
    '[##------]  1/4 dates  done 1  failed 0  running 2  waiting 1  ETA 0:12:30  0:00:42'
    """
    clock = format_elapsed(elapsed)
    if progress.phase in ("queued", "planning"):
        return f"{progress.phase}...  {clock}"
    if progress.phase == "dry run" or (
        progress.phase == "finished" and progress.to_run == 0 and progress.dates
    ):
        what = "dry run" if progress.phase == "dry run" else "nothing to run"
        return f"{what}: {progress.dates} dates planned, {progress.skipped} skipped  {clock}"
    if progress.phase == "finished" and not progress.dates and not progress.to_run:
        return f"finished without a plan  {clock}"
    filled = round(width * progress.finished / progress.to_run) if progress.to_run else width
    parts = [
        f"[{'#' * filled}{'-' * (width - filled)}]",
        f"{progress.finished}/{progress.to_run} dates",
        f"done {progress.done}",
        f"failed {progress.failed}",
        f"running {progress.running}",
        f"waiting {progress.waiting}",
    ]
    if progress.cancelled:
        parts.append(f"cancelled {progress.cancelled}")
    if progress.skipped:
        parts.append(f"skipped {progress.skipped}")
    if progress.eta is not None:
        parts.append(f"ETA {format_elapsed(progress.eta)}")
    parts.append(clock)
    return "  ".join(parts)


class ProgressPrinter:
    """Shows progress lines: redrawn in place on a terminal, plain lines otherwise.

    On a terminal every update redraws the line (``\\r``), cut to ``columns`` so it never wraps.
    Elsewhere (CI logs, pipes) a line is printed when the counts changed (a new estimate alone is
    no change), at most every ``every`` seconds, and at least every ``heartbeat`` seconds so a log
    shows the command is alive.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool,
        every: float = 5.0,
        heartbeat: float = 60.0,
        columns: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.every = every
        self.heartbeat = heartbeat
        self.columns = columns or shutil.get_terminal_size((100, 24)).columns
        self.clock = clock
        self._width = 0
        self._shown: str | None = None  # the last line shown, without its clock
        self._shown_at: float | None = None

    def show(self, progress: Progress, elapsed: float, *, force: bool = False) -> None:
        line, now = format_progress(progress, elapsed), self.clock()
        key = format_progress(replace(progress, eta=None), 0)
        if self.tty:
            line = line[: self.columns - 1]
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            since = None if self._shown_at is None else now - self._shown_at
            changed = key != self._shown
            due = since is None or since >= self.heartbeat or (changed and (force or since >= self.every))
            if not due:
                return
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown, self._shown_at = key, now

    def close(self, progress: Progress, elapsed: float) -> None:
        """Show the last state (unless that line is already shown) and end the line."""
        self.show(progress, elapsed, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- status and list


def _day(iso: str | None) -> str:
    """An ISO-8601 date as short as it reads: the day alone when it is midnight UTC.

    >>> _day("2024-01-05T00:00:00+00:00"), _day("2024-01-05"), _day("2024-01-05T06:00:00+00:00")
    ('2024-01-05', '2024-01-05', '2024-01-05T06:00:00+00:00')
    """
    if not iso:
        return "?"
    return iso[:10] if iso[10:] in ("", "T00:00:00+00:00", "T00:00:00Z", "T00:00:00") else iso


def window_text(backfill: Mapping[str, Any]) -> str:
    """The dates a backfill asked for: its window, or how many explicit dates (first..last).

    >>> window_text({"window": {"start_date": "2024-01-01", "end_date": "2024-01-31T00:00:00+00:00"}})
    '2024-01-01..2024-01-31'
    >>> day = "2024-06-05T00:00:00+00:00"
    >>> window_text({"window": {"dates": 1, "first_date": day, "last_date": day}})
    '1 date (2024-06-05)'
    """
    window = backfill.get("window") or {}
    if window.get("dates"):
        count = int(window["dates"])
        span = ""
        if window.get("first_date"):
            first, last = _day(window["first_date"]), _day(window.get("last_date"))
            span = f" ({first})" if first == last else f" ({first}..{last})"
        return f"{count} date{'' if count == 1 else 's'}{span}"
    if window.get("start_date") or window.get("end_date"):
        return f"{_day(window.get('start_date'))}..{_day(window.get('end_date'))}"
    return "-"


def finished_text(backfill: Mapping[str, Any]) -> str:
    """Dates finished / to run (``N planned`` for a dry run; ``-`` before the plan, or when the
    target's runs are not for this reader).

    >>> finished_text({"planned": True, "visible": True, "progress": {"finished": 3, "acting": 5}})
    '3/5'
    """
    progress = backfill.get("progress") or {}
    if not backfill.get("planned") or not backfill.get("visible"):
        return "-"
    if backfill.get("dry_run"):
        return f"{progress.get('dates', 0)} planned"
    return f"{progress.get('finished', 0)}/{progress.get('acting', 0)}"


def counts_text(backfill: Mapping[str, Any]) -> str:
    """A backfill's dates in one line: how many, finished / to run, then each state's count.

    >>> tally = Counts(dates=4, acting=3, succeeded=2, running=1, skipped=1).to_dict()
    >>> counts_text({"planned": True, "visible": True, "progress": {"finished": 2, "acting": 3,
    ...              "dates": 4, "tally": tally}})
    '4 dates, 2/3 finished: succeeded 2, running 1, skipped 1'
    """
    progress = backfill.get("progress") or {}
    finished = finished_text(backfill)
    if finished == "-":
        return "-"
    tally = progress.get("tally") or {}
    states = ("succeeded", "failed", "cancelled", "running", "queued", "pending", "skipped")
    shown = ", ".join(f"{state} {tally[state]}" for state in states if tally.get(state))
    dates = f"{progress.get('dates', 0)} dates"
    if backfill.get("dry_run"):
        return f"{dates}: dry run, {tally.get('planned', 0)} to run" + (f", {shown}" if shown else "")
    return f"{dates}, {finished} finished" + (f": {shown}" if shown else "")


def format_status(backfill: Mapping[str, Any]) -> str:
    """``backfill status``: a backfill's phase, request and counts, then one line per date."""
    fields = [
        ("target", backfill.get("target_dag_id") or "?"),
        ("window", window_text(backfill)),
        ("reprocess", backfill.get("reprocess") or ""),
        ("reason", backfill.get("reason") or ""),
        ("triggered by", backfill.get("triggered_by") or ""),
        ("started", backfill.get("start_date") or backfill.get("queued_at") or ""),
        ("ended", backfill.get("end_date") or ""),
        ("dates", counts_text(backfill)),
        ("ETA", eta_text(backfill.get("eta"))),
        ("error", backfill.get("error") or ""),
    ]
    dry_run = " (dry run)" if backfill.get("dry_run") else ""
    lines = [f"backfill {backfill.get('run_id')}: {backfill.get('phase')}{dry_run}"]
    lines += ["  " + line for line in aligned([(k, str(v)) for k, v in fields if v not in ("", "-")])]
    if not backfill.get("visible", True):
        lines.append("  (no read access to the target DAG: its dates are not shown)")
    for applied in backfill.get("history") or []:
        came = f" -> {applied['detail']}" if applied.get("detail") else ""
        lines.append(
            f"  {applied['at'][:19].replace('T', ' ')}  {applied['action']} by {applied['by']}{came}"
        )
    cells = backfill.get("cells") or []
    if cells:
        lines += ["", *date_table(cells)]
    return "\n".join(lines)


def eta_text(eta: Mapping[str, Any] | None) -> str:
    """A running backfill's estimated end, as ``backfill status`` prints it ("" when it has none).

    >>> eta_text({"end": "2024-01-01T12:30:00+00:00", "remaining_seconds": 750.0, "basis": "finished_runs"})
    '2024-01-01 12:30:00 UTC (0:12:30 left)'
    >>> eta_text(None)
    ''
    """
    if not eta or not eta.get("end"):
        return ""
    return f"{eta['end'][:19].replace('T', ' ')} UTC ({format_elapsed(float(eta['remaining_seconds']))} left)"


def status_exit_code(phase: str | None) -> int:
    """``backfill status``'s exit status for a backfill's phase.

    >>> [status_exit_code(p) for p in ("succeeded", "planned", "failed", "cancelled", "running", "new")]
    [0, 0, 1, 1, 3, 3]
    """
    if phase in (Phase.SUCCEEDED, Phase.PLANNED):
        return EXIT_SUCCESS
    if phase in (Phase.FAILED, Phase.CANCELLED):
        return EXIT_FAILED
    return EXIT_STILL_RUNNING  # queued, planning, running, cancelling, or a phase a newer server has


def format_list(page: Mapping[str, Any]) -> str:
    """``backfill list``: a header and one line per backfill (empty when there is none)."""
    backfills = page.get("backfills") or []
    if not backfills:
        return ""
    rows = [("run_id", "phase", "target", "window", "finished", "triggered_by")]
    for b in backfills:
        rows.append(
            (
                str(b.get("run_id")),
                str(b.get("phase")),
                str(b.get("target_dag_id") or "?"),
                window_text(b),
                finished_text(b),
                str(b.get("triggered_by") or "-"),
            )
        )
    return "\n".join(aligned(rows))


def list_footer(page: Mapping[str, Any]) -> str:
    """Which backfills a page shows of how many, and the flag for the next page.

    >>> list_footer({"total": 45, "offset": 20, "backfills": [{}] * 20})
    'backfills 21-40 of 45; next: --offset 40'
    >>> list_footer({"total": 0, "offset": 0, "backfills": []})
    'no backfills'
    """
    total, offset, shown = int(page.get("total") or 0), int(page.get("offset") or 0), len(page["backfills"])
    if not shown:
        return f"no backfills at --offset {offset}, of {total}" if total else "no backfills"
    text = f"backfills {offset + 1}-{offset + shown} of {total}"
    return text + (f"; next: --offset {offset + shown}" if offset + shown < total else "")


# --------------------------------------------------------------------------- running it


def ui_link(api_url: str, run_id: str) -> str:
    return f"{api_url}/dags/{CONTROLLER_DAG_ID}/runs/{quote(run_id, safe='')}"


def _parse_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """The ``backfill`` command and its sub-commands (:func:`command_of`). Returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = command_of(arguments)
    if command == "status":
        return run_status(arguments[1:])
    if command == "list":
        return run_list(arguments[1:])
    if command in CONTROLS:
        return run_control(command, arguments[1:])
    return run_backfill(arguments)


def _client_for(
    prog: str, args: argparse.Namespace, settings: ApiSettings, err: TextIO
) -> tuple[ControllerApi, str] | None:
    """A client for Airflow as the user found, and the password (to redact); None after saying
    which credential is missing."""
    if settings.username is None:
        print(
            f"{prog}: error: no user name for {settings.url}: give --username, or set "
            "BACKFILL_API_USERNAME, or AIRFLOW_CONN_AIRFLOW_API=http://USER:PASSWORD@HOST:PORT "
            "(credentials found with another URL are not sent to this one)",
            file=err,
        )
        return None
    password = settings.password
    if password is None:
        if not sys.stdin.isatty():
            print(
                f"{prog}: error: no password for {settings.url}: give --password or set "
                "BACKFILL_API_PASSWORD",
                file=err,
            )
            return None
        password = getpass.getpass(f"Password for {settings.username} at {settings.url}: ")

    # Imported here: `backfill --help` and command-line errors need no HTTP library.
    from include.backfill.client import ControllerApi

    secret = password
    log = (lambda line: print(redact(line, secret), file=err)) if args.verbose else None
    return ControllerApi(settings.url, settings.username, password, log=log), password


def run_backfill(argv: Sequence[str]) -> int:
    """``backfill DAG_ID ...``: trigger the controller, follow it, print the report."""
    parser = build_parser()
    args = parser.parse_args(argv)
    err = sys.stderr
    try:
        conf = to_conf(args)
        settings = api_settings(args.api_url, args.username, args.password, os.environ)
    except UsageError as exc:
        parser.print_usage(err)
        print(f"{parser.prog}: error: {exc}", file=err)
        return EXIT_USAGE
    for note in ignored_flag_notes(args):
        print(f"note: {note}", file=err)
    client = _client_for(parser.prog, args, settings, err)
    if client is None:
        return EXIT_USAGE
    api, password = client
    return _start(api, args, conf, settings.url, password, prog=parser.prog, err=err)


def _start(
    api: ControllerApi,
    args: argparse.Namespace,
    conf: dict[str, Any],
    url: str,
    password: str,
    *,
    prog: str,
    err: TextIO,
) -> int:
    """Log in, then print the dry run's plan, or start the backfill and follow it (unless --no-wait)."""
    from include.backfill.client import ApiError, RequestRefused

    run_id: str | None = None
    try:
        api.login()
        print(f"{CONTROLLER_DAG_ID} <- {json.dumps(conf)}", file=err)
        if conf.get("dry_run"):
            report = api.dry_run(conf)
            counts = report["counts"]
            print(f"dry run: {counts['dates']} dates planned, {counts.get('skipped', 0)} skipped", file=err)
            print(render_table(report), file=sys.stdout)
            return EXIT_SUCCESS
        run_id = api.start_backfill(conf)
        if args.no_wait:
            print(f"started {ui_link(url, run_id)}", file=err)
            print(run_id)
            return EXIT_SUCCESS
        print(f"run {run_id}: {ui_link(url, run_id)}", file=err)
        return follow(api, run_id, conf, args.poll_interval, out=sys.stdout, err=err)
    except RequestRefused as exc:
        print(redact(f"{prog}: request refused, nothing was started:\n{exc.detail}", password), file=err)
        return EXIT_USAGE
    except ApiError as exc:
        where = f" (controller run {run_id} keeps going: {ui_link(url, run_id)})" if run_id else ""
        print(redact(f"{prog}: error: {exc}{where}", password), file=err)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        if run_id:
            print(f"\nstopped watching; the controller run keeps going: {ui_link(url, run_id)}", file=err)
        return EXIT_INTERRUPTED


def _ask(
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    call: Callable[[ControllerApi, argparse.Namespace], dict[str, Any]],
    *,
    not_found: int,
    unreachable: int,
    refused: int | None = None,
) -> dict[str, Any] | int:
    """Parse a sub-command's command line, log in and make its one call: the answer, or the exit
    status after saying what went wrong (the call answered 404: ``not_found``; 403 or 409:
    ``refused`` if given; else ``unreachable``)."""
    args = parser.parse_args(argv)
    err = sys.stderr
    try:
        settings = api_settings(args.api_url, args.username, args.password, os.environ)
    except UsageError as exc:
        parser.print_usage(err)
        print(f"{parser.prog}: error: {exc}", file=err)
        return EXIT_USAGE
    client = _client_for(parser.prog, args, settings, err)
    if client is None:
        return EXIT_USAGE
    api, password = client

    from include.backfill.client import ApiError

    logged_in = False
    try:
        api.login()
        logged_in = True
        return call(api, args)
    except ApiError as exc:
        print(redact(f"{parser.prog}: error: {exc}", password), file=err)
        if logged_in and refused is not None and exc.status in (403, 409):
            return refused
        return not_found if logged_in and exc.status == 404 else unreachable
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def run_status(argv: Sequence[str]) -> int:
    """``backfill status RUN_ID``: print one backfill; the exit status says its phase."""
    answer = _ask(
        build_status_parser(),
        argv,
        lambda api, args: api.backfill(args.run_id),
        not_found=EXIT_USAGE,
        unreachable=EXIT_STATUS_UNREACHABLE,
    )
    if isinstance(answer, int):
        return answer
    print(format_status(answer))
    return status_exit_code(answer.get("phase"))


def run_control(command: str, argv: Sequence[str]) -> int:
    """``backfill pause|resume|cancel|rerun-failed RUN_ID``: apply the control, print the outcome."""
    control = CONTROLS[command]
    answer = _ask(
        build_control_parser(command),
        argv,
        lambda api, args: api.control(args.run_id, control),
        not_found=EXIT_USAGE,
        unreachable=EXIT_UNREACHABLE,
        refused=EXIT_FAILED,
    )
    if isinstance(answer, int):
        return answer
    print(format_controlled(control, answer))
    return EXIT_SUCCESS


def format_controlled(control: str, answer: Mapping[str, Any]) -> str:
    """What a control did: the new backfill's run id (``rerun_failed``), else the backfill's phase.

    >>> format_controlled("pause", {"run_id": "manual__1", "phase": "paused", "paused": True})
    'backfill manual__1: paused'
    >>> format_controlled("rerun_failed", {"dag_run_id": "manual__2", "dates": 3})
    'started manual__2: a backfill of the 3 failed dates'
    """
    if control == "rerun_failed":
        return f"started {answer.get('dag_run_id')}: a backfill of the {answer.get('dates')} failed dates"
    return f"backfill {answer.get('run_id')}: {answer.get('phase')}"


def run_list(argv: Sequence[str]) -> int:
    """``backfill list``: one line per backfill, newest first."""

    def call(api: ControllerApi, args: argparse.Namespace) -> dict[str, Any]:
        return api.backfills(dag_id=args.dag_id, state=args.state, limit=args.limit, offset=args.offset)

    answer = _ask(build_list_parser(), argv, call, not_found=EXIT_UNREACHABLE, unreachable=EXIT_UNREACHABLE)
    if isinstance(answer, int):
        return answer
    table = format_list(answer)
    if table:
        print(table)
    print(list_footer(answer), file=sys.stderr)
    return EXIT_SUCCESS


def follow(
    api: ControllerApi,
    run_id: str,
    conf: Mapping[str, Any],
    poll_interval: float,
    *,
    out: TextIO,
    err: TextIO,
) -> int:
    """Show progress until the controller run has finished, then print its report.

    Each poll costs one call: the backfill as the Backfills page shows it (its phase, counts
    and dates, every segment included).
    """
    from include.backfill.client import ApiError

    printer = ProgressPrinter(err, tty=err.isatty())
    began = time.monotonic()
    trouble_since: float | None = None
    progress = Progress("queued")
    state: str | None = None
    while True:
        try:
            backfill = api.backfill(run_id)
            state = backfill.get("state")
            progress = progress_of(backfill)
            trouble_since = None
        except ApiError as exc:
            if not exc.transient:
                raise
            trouble_since = trouble_since or time.monotonic()
            if time.monotonic() - trouble_since > 300:
                raise
            state = None
        if state in FINISHED_RUN:
            break
        printer.show(progress, time.monotonic() - began)
        time.sleep(poll_interval)
    printer.close(progress, time.monotonic() - began)

    report = _parse_json(api.xcom(CONTROLLER_DAG_ID, run_id, "report", "return_value"))
    if not isinstance(report, dict):
        print(f"the controller run ended {state} without a report; see its task logs", file=err)
        return EXIT_FAILED
    if report.get("error"):
        # A report carries an error only when planning did not finish: nothing was triggered.
        print(
            f"backfill refused by the controller, nothing was created or changed:\n{report['error']}",
            file=err,
        )
    else:
        print(render_table(report), file=out)
    return EXIT_SUCCESS if report.get("success") is True and state == "success" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
