"""Running each command: a backfill (trigger the controller, follow it, print its table),
``status``, ``list`` and the controls; :func:`main` picks one
(:func:`backfill_controller.cli.flags.command_of`) and returns its exit status.

Exit status of a backfill: 0 the backfill succeeded (or the dry run was planned); 1 it failed, or
the controller refused the request; 2 the command line or the trigger was refused (nothing was
started); 3 Airflow could not be reached or refused the login; 130 interrupted (the controller
run keeps going). ``status`` and ``list`` document theirs in their ``--help``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from backfill_controller.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_STATUS_UNREACHABLE,
    EXIT_STILL_RUNNING,
    EXIT_SUCCESS,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
)
from backfill_controller.cli.conf import ignored_flag_notes, to_conf
from backfill_controller.cli.connection import api_settings, client_for, redact
from backfill_controller.cli.flags import (
    CONTROLS,
    build_control_parser,
    build_list_parser,
    build_parser,
    build_status_parser,
    command_of,
)
from backfill_controller.cli.progress import follow
from backfill_controller.cli.views import format_controlled, format_list, format_status, list_footer
from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.report import render_table
from backfill_controller.domain.state import Phase

if TYPE_CHECKING:
    from backfill_controller.client.controller_api import ControllerApi


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
    client = client_for(parser.prog, settings, err, verbose=args.verbose)
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
    from backfill_controller.client.rest import ApiError, RequestRefused

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
        return follow(api, run_id, args.poll_interval, out=sys.stdout, err=err)
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
    client = client_for(parser.prog, settings, err, verbose=args.verbose)
    if client is None:
        return EXIT_USAGE
    api, password = client

    from backfill_controller.client.rest import ApiError

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


def ui_link(api_url: str, run_id: str) -> str:
    """The controller run's page in Airflow's UI."""
    return f"{api_url}/dags/{CONTROLLER_DAG_ID}/runs/{quote(run_id, safe='')}"


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
