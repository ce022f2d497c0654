"""A parsed ``backfill`` command line as the controller's conf (:func:`to_conf`), and the notes
for the Airflow 2 flags it accepts without effect (:func:`ignored_flag_notes`)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from typing import Any

from backfill_controller.cli.common import UsageError
from backfill_controller.cli.flags import LEGACY_FLAGS, NEEDS_TASK_REGEX, LegacyFlag, flag_keys, flag_name
from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.request import DAG_ID_PATTERN, DATE_ACCEPTED, parse_datetime

#: Keys whose flags :func:`_task_conf` translates; the flag of every other key sets it as given.
_TASK_KEYS = ("task_regex", *NEEDS_TASK_REGEX)


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
                raise UsageError(f"{flag_name(name)} only applies with -t/--task-regex")
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


def to_conf(args: argparse.Namespace) -> dict[str, Any]:
    """The controller's conf for a parsed command line; only the keys the command line sets.

    Raises :class:`UsageError` naming the flags for combinations the command refuses.

    >>> from backfill_controller.cli.flags import build_parser
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
    conf.update(_as_given(args, (name for name in flag_keys() if name not in _TASK_KEYS)))
    if args.conf is not None:
        conf["conf"] = _target_conf(args.conf)
    if args.notify is not None:
        conf["notify"] = [n.strip() for n in args.notify.split(",") if n.strip()]
    return conf
