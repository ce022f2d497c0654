"""A running backfill as the command shows it: the progress line (:func:`format_progress`),
redrawn in place on a terminal (:class:`ProgressPrinter`), until the controller run ends and its
per-date table is printed (:func:`follow`)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TextIO

from backfill_controller.cli.common import EXIT_FAILED, EXIT_SUCCESS
from backfill_controller.contract import CONTROLLER_DAG_ID, Task, XCom
from backfill_controller.domain.airflow_states import FINISHED_RUN
from backfill_controller.domain.report import render_table
from backfill_controller.domain.state import Counts, Phase

if TYPE_CHECKING:
    from backfill_controller.client.controller_api import ControllerApi


@dataclass(frozen=True)
class Progress:
    """Where a controller run is: its phase as the progress line names it, and its dates counted
    as :func:`backfill_controller.domain.state.count` counts them (the Backfills page and the report show the
    same counts)."""

    phase: str  # queued | planning | running | cancelling | dry run | finished
    counts: Counts = Counts()
    eta: float | None = None
    """Seconds the backfill has left, as estimated (None: no estimate)."""


#: How the progress line names each phase of :class:`backfill_controller.domain.state.Phase`.
_SHOWN_PHASE = {Phase.QUEUED: "queued", Phase.PLANNING: "planning", Phase.PLANNED: "dry run"}


def progress_of(backfill: Mapping[str, Any]) -> Progress:
    """Progress from the Backfills page's view of one backfill (``GET .../api/backfills/{run_id}``),
    the same the page and the report show. Counts a newer server adds are left out.

    >>> tally = {"dates": 3, "acting": 2, "succeeded": 1, "running": 1, "skipped": 1, "finished": 1}
    >>> progress_of({"phase": "running", "progress": {"tally": tally}})  # doctest: +ELLIPSIS
    Progress(phase='running', counts=Counts(dates=3, acting=2, pending=0, queued=0, running=1, ...)
    >>> eta = {"end": "2024-01-01T10:12:30+00:00", "remaining_seconds": 750.0, "basis": "finished_runs"}
    >>> progress_of({"phase": "running", "progress": {"tally": tally}, "eta": eta}).eta
    750.0
    >>> progress_of({"phase": "paused", "progress": {"tally": tally}}).phase
    'paused'
    """
    try:
        shown = Phase(backfill.get("phase") or Phase.QUEUED)
    except ValueError:  # a phase a newer server knows
        shown = Phase.RUNNING
    phase = _SHOWN_PHASE.get(shown) or (
        shown.value if shown in (Phase.RUNNING, Phase.PAUSED, Phase.CANCELLING) else "finished"
    )
    eta = (backfill.get("eta") or {}).get("remaining_seconds")
    return Progress(
        phase,
        Counts.from_dict((backfill.get("progress") or {}).get("tally") or {}),
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

    Dates to run (``acting``) are done (succeeded), failed, cancelled, running (their run is
    queued or running) or waiting (``pending``: their chunk waits, or the trigger is on its way).

    >>> counts = Counts(dates=5, acting=4, succeeded=1, failed=1, running=2, skipped=1)
    >>> format_progress(Progress("running", counts), 42, 8)
    '[####----]  2/4 dates  done 1  failed 1  running 2  waiting 0  skipped 1  0:00:42'
    >>> counts = Counts(dates=4, acting=4, succeeded=1, queued=1, running=1, pending=1)
    >>> format_progress(Progress("running", counts, eta=750.4), 42, 8)
    '[##------]  1/4 dates  done 1  failed 0  running 2  waiting 1  ETA 0:12:30  0:00:42'
    >>> format_progress(Progress("paused", counts), 42, 8)
    '[##------]  1/4 dates  done 1  failed 0  running 2  waiting 1  paused  0:00:42'
    """
    clock = format_elapsed(elapsed)
    counts = progress.counts
    if progress.phase in ("queued", "planning"):
        return f"{progress.phase}...  {clock}"
    if progress.phase == "dry run" or (progress.phase == "finished" and counts.acting == 0 and counts.dates):
        what = "dry run" if progress.phase == "dry run" else "nothing to run"
        return f"{what}: {counts.dates} dates planned, {counts.skipped} skipped  {clock}"
    if progress.phase == "finished" and not counts.dates and not counts.acting:
        return f"finished without a plan  {clock}"
    filled = round(width * counts.finished / counts.acting) if counts.acting else width
    parts = [
        f"[{'#' * filled}{'-' * (width - filled)}]",
        f"{counts.finished}/{counts.acting} dates",
        f"done {counts.succeeded}",
        f"failed {counts.failed}",
        f"running {counts.in_flight}",
        f"waiting {counts.pending}",
    ]
    if counts.cancelled:
        parts.append(f"cancelled {counts.cancelled}")
    if counts.skipped:
        parts.append(f"skipped {counts.skipped}")
    if progress.phase == Phase.PAUSED:
        parts.append("paused")
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


def _parse_json(value: Any) -> Any:
    """An XCom's value: JSON text parsed, anything else as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def follow(
    api: ControllerApi,
    run_id: str,
    poll_interval: float,
    *,
    out: TextIO,
    err: TextIO,
) -> int:
    """Show progress until the controller run has finished, then print its report.

    Each poll costs one call: the backfill as the Backfills page shows it (its phase, counts
    and dates, every segment included).
    """
    from backfill_controller.client.rest import ApiError

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

    report = _parse_json(api.xcom(CONTROLLER_DAG_ID, run_id, Task.REPORT, XCom.RETURN_VALUE))
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
