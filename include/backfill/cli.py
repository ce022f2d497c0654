"""``backfill``: Airflow 2's ``airflow dags backfill`` command line, run by the backfill controller.

The command turns Airflow 2 style flags into the controller's conf (:func:`to_conf`), triggers
``backfill_controller`` over the REST API, shows live progress and prints the per-date table::

    backfill sales_pipeline -s 2024-01-01 -e 2024-10-26

Everything here except :func:`main` is pure (argument parsing, the conf, connection settings,
progress arithmetic and formatting) and imports neither Airflow nor an HTTP library, so the
command starts in a fraction of a second and the parts are unit-tested without a server. The
HTTP calls live in :mod:`include.backfill.client`.

Exit status: 0 the backfill succeeded (or the dry run was planned); 1 it failed, or the
controller refused the request; 2 the command line or the trigger was refused (nothing was
started); 3 Airflow could not be reached or refused the login; 130 interrupted (the controller
run keeps going).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote, unquote, urlsplit

from include.backfill.airflow_states import FINISHED_RUN
from include.backfill.report import render_table
from include.backfill.request import DAG_ID_PATTERN, DATE_ACCEPTED, parse_datetime
from include.backfill.state import Counts, Phase

if TYPE_CHECKING:
    from include.backfill.client import ControllerApi

CONTROLLER_DAG_ID = "backfill_controller"
DEFAULT_API_URL = "http://localhost:8080"
DEFAULT_POLL_INTERVAL = 3.0

EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """The command line asks for something the command refuses; nothing was sent to Airflow."""


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
    schedule (the error names the nearest ones). Same for -e alone. -s and -e form an
    inclusive window of logical dates, like Airflow 2.
  * Dates that already have a run are left alone unless --reset-dagruns (re-run every date)
    or --rerun-failed-tasks (re-run dates whose run failed). Queued or running runs are never
    touched.
  * -t REGEX re-runs only the matching tasks of existing runs, and by default their upstream
    tasks too, as in Airflow 2; -i (--ignore-dependencies) runs only the matching tasks.
  * The backfill continues past failed dates (--continue-on-failures is the default); use
    --max-failed-dates 1 to stop starting new dates after the first failure.
  * --dry-run reports what would happen to each date and changes nothing.

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

  # re-run the one failed date of a DAG
  backfill data_transformation_dag -s 2024-06-05 --reset-dagruns

  # see the plan first; trigger and return at once, printing the controller's run id
  backfill sales_pipeline -s 2024-01-01 -e 2024-01-31 --dry-run
  backfill sales_pipeline --dates 2024-01-05,2024-01-10 --reason "late files" --no-wait"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


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
    parser = argparse.ArgumentParser(
        prog="backfill",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dag_id", metavar="DAG_ID", help="the DAG to backfill")

    dates = parser.add_argument_group("dates (a window, one date, or a list)")
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

    what = parser.add_argument_group("what to re-run")
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
    what.add_argument(
        "-t",
        "--task-regex",
        metavar="REGEX",
        help="re-run only the tasks whose task_id matches (re.search) in existing runs, "
        "plus their upstream tasks unless -i",
    )
    what.add_argument(
        "-i",
        "--ignore-dependencies",
        action="store_true",
        help="with -t: run only the matching tasks, not their upstream tasks (Airflow 2's -i); "
        "no effect without -t",
    )
    what.add_argument(
        "--include-downstream",
        action="store_true",
        help="with -t: also re-run the tasks downstream of the matching ones",
    )
    what.add_argument(
        "--missing-runs",
        choices=("skip", "trigger"),
        help="with -t: a date with no run is reported as skipped (skip, default) or "
        "gets a whole new run (trigger)",
    )

    how = parser.add_argument_group("how")
    how.add_argument("-B", "--run-backwards", action="store_true", help="newest date first")
    how.add_argument(
        "-c",
        "--conf",
        metavar="JSON",
        help='JSON object passed as conf to every target run, e.g. \'{"mode": "full"}\'',
    )
    how.add_argument(
        "--max-active-runs",
        type=_positive_int,
        metavar="N",
        help="most target runs of this backfill running at once (default 10)",
    )
    how.add_argument(
        "--chunk-size",
        type=_positive_int,
        metavar="N",
        help="dates triggered and waited for together (default: --max-active-runs)",
    )
    how.add_argument(
        "--max-failed-dates",
        type=_positive_int,
        metavar="N",
        help="after N failed dates start no new chunk; the rest are reported cancelled",
    )
    how.add_argument(
        "--continue-on-failures",
        action="store_true",
        help="keep going after failed dates: the default (no --max-failed-dates)",
    )
    how.add_argument("--reason", metavar="TEXT", help="recorded as the note of every run created or cleared")
    how.add_argument(
        "--dry-run", action="store_true", help="report what would happen to each date; change nothing"
    )
    how.add_argument(
        "--on-overlap",
        choices=("refuse", "wait"),
        help="another backfill still running has some of these dates: refuse (default) or wait for it",
    )
    how.add_argument(
        "--timeout-minutes",
        type=_positive_int,
        metavar="N",
        help="longest the controller waits for the target runs (default: the deployment's, 1440)",
    )
    how.add_argument(
        "--notify",
        metavar="NAMES",
        help="comma-separated names of the deployment's notifiers to tell at the end ('' for nobody; "
        "default: the deployment's BACKFILL_NOTIFY)",
    )
    how.add_argument(
        "--segment-size",
        type=_positive_int,
        metavar="N",
        help="advanced: dates per controller run, at most 1024 (default: the deployment's, 1000)",
    )

    run = parser.add_argument_group("Airflow and output")
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
    run.add_argument("--no-wait", action="store_true", help="print the controller's run id and exit at once")
    run.add_argument(
        "--poll-interval",
        type=_seconds,
        default=DEFAULT_POLL_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between progress checks (default {DEFAULT_POLL_INTERVAL:g})",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="also print every REST API call")

    legacy = parser.add_argument_group(
        "Airflow 2 flags without an equivalent", "ignored ones print a note; refused ones stop the command"
    )
    for flag in LEGACY_FLAGS:
        verdict = "refused" if flag.refused else "ignored"
        help_text = f"{verdict}: {flag.note}"
        if flag.metavar:
            legacy.add_argument(*flag.flags, dest=flag.dest, metavar=flag.metavar, help=help_text)
        else:
            legacy.add_argument(*flag.flags, dest=flag.dest, action="store_true", help=help_text)
    return parser


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


def to_conf(args: argparse.Namespace) -> dict[str, Any]:
    """The controller's conf for a parsed command line; only the keys the command line sets.

    Raises :class:`UsageError` naming the flags for combinations the command refuses.

    >>> to_conf(build_parser().parse_args(["sales", "-s", "2024-01-01", "-e", "2024-01-31"]))
    {'dag_id': 'sales', 'start_date': '2024-01-01', 'end_date': '2024-01-31'}
    >>> to_conf(build_parser().parse_args(["sales", "-s", "2024-06-05", "--reset-dagruns"]))
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
    conf: dict[str, Any] = {"dag_id": dag_id}

    start, end = args.start_date, args.end_date
    if args.dates:
        if start is not None or end is not None:
            raise UsageError("give either --dates or -s/--start-date and -e/--end-date, not both")
        conf["dates"] = _explicit_dates(args.dates)
    elif start is not None and end is not None:
        conf["start_date"] = _check_date(start, "-s/--start-date")
        conf["end_date"] = _check_date(end, "-e/--end-date")
        if parse_datetime(start) > parse_datetime(end):
            raise UsageError(f"-s/--start-date {start} is after -e/--end-date {end}")
    elif start is not None or end is not None:
        # Airflow 2 took a lone -s or -e as a one-date window; one explicit date says the same
        # and, unlike a window, also works for DAGs with schedule=None.
        one = start if start is not None else end
        conf["dates"] = [_check_date(one, "-s/--start-date" if start is not None else "-e/--end-date")]
    else:
        raise UsageError("no dates: give -s/--start-date (and -e/--end-date), or --dates")

    if args.reset_dagruns and args.rerun_failed_tasks:
        raise UsageError(
            "give one of --reset-dagruns (re-run every date) and --rerun-failed-tasks "
            "(re-run dates whose run failed), not both"
        )
    if args.reset_dagruns:
        conf["reprocess"] = "all"
    elif args.rerun_failed_tasks:
        conf["reprocess"] = "failed"

    if args.task_regex:
        conf["task_regex"] = args.task_regex
        conf["include_upstream"] = not args.ignore_dependencies
        if args.include_downstream:
            conf["include_downstream"] = True
        if args.missing_runs:
            conf["missing_runs"] = args.missing_runs
    else:
        for given, name in (
            (args.include_downstream, "--include-downstream"),
            (args.missing_runs, "--missing-runs"),
        ):
            if given:
                raise UsageError(f"{name} only applies with -t/--task-regex")

    if args.run_backwards:
        conf["run_backwards"] = True
    if args.max_active_runs is not None:
        conf["max_active_runs"] = args.max_active_runs
    if args.chunk_size is not None:
        if args.max_active_runs is not None and args.chunk_size > args.max_active_runs:
            raise UsageError(
                f"--chunk-size {args.chunk_size} is larger than --max-active-runs {args.max_active_runs}; "
                "a chunk is triggered at once"
            )
        conf["chunk_size"] = args.chunk_size
    if args.max_failed_dates is not None:
        if args.continue_on_failures:
            raise UsageError("--continue-on-failures means no failure budget; drop it or --max-failed-dates")
        conf["max_failed_dates"] = args.max_failed_dates
    if args.conf is not None:
        conf["conf"] = _target_conf(args.conf)
    if args.reason:
        conf["reason"] = args.reason
    if args.dry_run:
        conf["dry_run"] = True
    for key in ("on_overlap", "timeout_minutes", "segment_size"):
        if getattr(args, key) is not None:
            conf[key] = getattr(args, key)
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
    >>> progress_of({"phase": "running", "progress": {"tally": tally}})
    Progress(phase='running', dates=3, to_run=2, done=1, failed=0, running=1, cancelled=0, skipped=1)
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
    return Progress(
        phase,
        dates=tally.dates,
        to_run=tally.acting,
        done=tally.succeeded,
        failed=tally.failed,
        running=tally.queued + tally.running,
        cancelled=tally.cancelled,
        skipped=tally.skipped,
    )


def format_elapsed(seconds: float) -> str:
    """``H:MM:SS``.

    >>> format_elapsed(3725.4)
    '1:02:05'
    """
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def format_progress(progress: Progress, elapsed: float, width: int = 20) -> str:
    """One line of progress: a bar of finished dates, then done / failed / running / waiting.

    >>> format_progress(Progress("running", dates=5, to_run=4, done=1, failed=1, running=2, skipped=1), 42, 8)
    '[####----]  2/4 dates  done 1  failed 1  running 2  waiting 0  skipped 1  0:00:42'
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
    parts.append(clock)
    return "  ".join(parts)


class ProgressPrinter:
    """Shows progress lines: redrawn in place on a terminal, plain lines otherwise.

    On a terminal every update redraws the line (``\\r``), cut to ``columns`` so it never wraps.
    Elsewhere (CI logs, pipes) a line is printed when the counts changed, at most every ``every``
    seconds, and at least every ``heartbeat`` seconds so a log shows the command is alive.
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
        line, key, now = format_progress(progress, elapsed), format_progress(progress, 0), self.clock()
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
    """The ``backfill`` command. Returns the exit status."""
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
    if settings.username is None:
        print(
            f"{parser.prog}: error: no user name for {settings.url}: give --username, or set "
            "BACKFILL_API_USERNAME, or AIRFLOW_CONN_AIRFLOW_API=http://USER:PASSWORD@HOST:PORT "
            "(credentials found with another URL are not sent to this one)",
            file=err,
        )
        return EXIT_USAGE
    password = settings.password
    if password is None:
        if not sys.stdin.isatty():
            print(
                f"{parser.prog}: error: no password for {settings.url}: give --password or set "
                "BACKFILL_API_PASSWORD",
                file=err,
            )
            return EXIT_USAGE
        password = getpass.getpass(f"Password for {settings.username} at {settings.url}: ")

    # Imported here: `backfill --help` and command-line errors need no HTTP library.
    from include.backfill.client import ApiError, ControllerApi, RequestRefused

    log = (lambda line: print(redact(line, password), file=err)) if args.verbose else None
    api = ControllerApi(settings.url, settings.username, password, log=log)
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
            print(f"started {ui_link(settings.url, run_id)}", file=err)
            print(run_id)
            return EXIT_SUCCESS
        print(f"run {run_id}: {ui_link(settings.url, run_id)}", file=err)
        return follow(api, run_id, conf, args.poll_interval, out=sys.stdout, err=err)
    except RequestRefused as exc:
        detail = exc.detail
        print(redact(f"{parser.prog}: request refused, nothing was started:\n{detail}", password), file=err)
        return EXIT_USAGE
    except ApiError as exc:
        where = f" (controller run {run_id} keeps going: {ui_link(settings.url, run_id)})" if run_id else ""
        print(redact(f"{parser.prog}: error: {exc}{where}", password), file=err)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        if run_id:
            print(
                f"\nstopped watching; the controller run keeps going: {ui_link(settings.url, run_id)}",
                file=err,
            )
        return EXIT_INTERRUPTED


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
