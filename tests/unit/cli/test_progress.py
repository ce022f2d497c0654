"""Specification of :mod:`backfill_controller.cli.progress`: the progress line, its display, and
:func:`~backfill_controller.cli.progress.follow` reading a fake API's answers."""

from __future__ import annotations

import io
from typing import Any

import pytest

from backfill_controller.cli.common import EXIT_FAILED, EXIT_SUCCESS
from backfill_controller.cli.progress import Progress, ProgressPrinter, follow, format_progress, progress_of
from backfill_controller.contract import CONTROLLER_DAG_ID, Task, XCom
from backfill_controller.domain.state import Counts, Phase


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
        Progress("running", Counts(dates=3, acting=2, pending=2, skipped=1)),
    ),
    "queued and running runs are running dates": (
        backfill("running", dates=4, acting=4, queued=1, running=1, succeeded=1, pending=1),
        Progress("running", Counts(dates=4, acting=4, queued=1, running=1, succeeded=1, pending=1)),
    ),
    "done, failed (trigger failed included), cancelled": (
        backfill("running", dates=4, acting=4, succeeded=1, failed=2, cancelled=1),
        Progress("running", Counts(dates=4, acting=4, succeeded=1, failed=2, cancelled=1)),
    ),
    "cancelling: runs still finishing": (
        backfill("cancelling", "failed", dates=3, acting=3, running=1, cancelled=2),
        Progress("cancelling", Counts(dates=3, acting=3, running=1, cancelled=2)),
    ),
    "cancelled": (
        backfill("cancelled", "failed", dates=3, acting=3, succeeded=1, cancelled=2),
        Progress("finished", Counts(dates=3, acting=3, succeeded=1, cancelled=2)),
    ),
    "succeeded": (
        backfill("succeeded", "success", dates=3, acting=2, succeeded=2, skipped=1),
        Progress("finished", Counts(dates=3, acting=2, succeeded=2, skipped=1)),
    ),
    "failed": (
        backfill("failed", "failed", dates=2, acting=2, succeeded=1, failed=1),
        Progress("finished", Counts(dates=2, acting=2, succeeded=1, failed=1)),
    ),
    "dry run, finished": (
        backfill("planned", "success", dates=2, planned=1, skipped=1),
        Progress("dry run", Counts(dates=2, planned=1, skipped=1)),
    ),
    "nothing to run: every date skipped": (
        backfill("succeeded", "success", dates=2, skipped=2),
        Progress("finished", Counts(dates=2, skipped=2)),
    ),
    "finished before planning (refused)": (backfill("failed", "failed"), Progress("finished")),
    "a tally from a newer server: unknown counts ignored": (
        {"phase": "running", "progress": {"tally": {"dates": 1, "acting": 1, "running": 1, "paused": 3}}},
        Progress("running", Counts(dates=1, acting=1, running=1)),
    ),
    "an estimated end": (
        {
            **backfill("running", dates=2, acting=2, running=1, pending=1),
            "eta": {"end": "2026-01-01T08:12:30+00:00", "remaining_seconds": 750, "basis": "finished_runs"},
        },
        Progress("running", Counts(dates=2, acting=2, running=1, pending=1), eta=750.0),
    ),
    "no estimate": (
        {**backfill("running", dates=2, acting=2, pending=2), "eta": None},
        Progress("running", Counts(dates=2, acting=2, pending=2)),
    ),
    "an estimate without its time left": (
        {**backfill("running", dates=1, acting=1, pending=1), "eta": {"remaining_seconds": None}},
        Progress("running", Counts(dates=1, acting=1, pending=1)),
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
        Progress(
            "running", Counts(dates=12, acting=10, succeeded=4, failed=1, running=3, pending=2, skipped=2)
        ),
        "[##########----------]  5/10 dates  done 4  failed 1  running 3  waiting 2  skipped 2  0:01:05",
    ),
    "cancelled shown when any": (
        Progress("finished", Counts(dates=4, acting=4, succeeded=1, failed=1, cancelled=2)),
        "[####################]  4/4 dates  done 1  failed 1  running 0  waiting 0  cancelled 2  0:01:05",
    ),
    "estimated time left": (
        Progress("running", Counts(dates=10, acting=10, succeeded=4, running=2, pending=4), eta=3725.9),
        "[########------------]  4/10 dates  done 4  failed 0  running 2  waiting 4  ETA 1:02:05  0:01:05",
    ),
    "queued and running runs are running dates": (
        Progress("running", Counts(dates=3, acting=3, queued=1, running=1, pending=1)),
        "[--------------------]  0/3 dates  done 0  failed 0  running 2  waiting 1  0:01:05",
    ),
    "planning": (Progress("planning"), "planning...  0:01:05"),
    "finished without a plan (refused)": (Progress("finished"), "finished without a plan  0:01:05"),
    "dry run": (
        Progress("dry run", Counts(dates=3, planned=2, skipped=1)),
        "dry run: 3 dates planned, 1 skipped  0:01:05",
    ),
    "nothing to run": (
        Progress("finished", Counts(dates=3, skipped=3)),
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
    one, two, three = (Progress("running", Counts(acting=3, succeeded=n, pending=3 - n)) for n in (1, 2, 3))
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
        printer.show(Progress("running", Counts(acting=3, succeeded=1, running=2), eta=eta), second)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "ETA 0:05:00" in lines[0]


def test_off_a_terminal_the_end_is_not_repeated_when_only_the_clock_moved():
    stream, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(stream, tty=False, clock=clock)
    printer.show(Progress("running", Counts(dates=2, acting=2, succeeded=2)), 20)
    clock.now = 3
    printer.close(Progress("finished", Counts(dates=2, acting=2, succeeded=2)), 23)
    assert len(stream.getvalue().splitlines()) == 1


def test_on_a_terminal_the_line_is_redrawn_in_place():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, tty=True, columns=40, clock=Clock())
    printer.show(Progress("running", Counts(acting=1, running=1)), 2)
    printer.show(Progress("planning"), 1)
    printer.close(Progress("finished", Counts(acting=1, succeeded=1)), 3)
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

    assert follow(api, "manual__1", 0, out=out, err=err) == EXIT_SUCCESS

    assert api.polled == ["manual__1"] * 3
    assert api.xcoms == [(CONTROLLER_DAG_ID, "manual__1", Task.REPORT, XCom.RETURN_VALUE)]
    assert "SUCCESS: 1 dates of sales" in out.getvalue()
    assert "1/1 dates  done 1" in err.getvalue().splitlines()[-1]


def test_follow_prints_whether_every_date_of_the_window_has_a_successful_run():
    ended = [backfill("succeeded", "success", dates=2, acting=1, succeeded=1, skipped=1)]
    left_alone = {
        "logical_date": "2024-01-02T00:00:00+00:00",
        "action": "skipped",
        "state": "failed",
        "run_id": "scheduled__02",
        "why": "run exists (failed); reprocess=failed or all re-runs it",
    }
    report = {**REPORT, "window_complete": False, "dates": [*REPORT["dates"], left_alone]}
    out, err = io.StringIO(), io.StringIO()

    assert follow(FakeApi(ended, report), "m", 0, out=out, err=err) == EXIT_SUCCESS

    lines = out.getvalue().splitlines()
    assert lines[2].split()[:3] == ["2024-01-02T00:00:00+00:00", "skipped", "failed"]
    assert lines[-1] == "window: some dates have no successful run (see their state)"


def test_follow_fails_when_the_report_says_so_or_is_missing():
    ended = [backfill("failed", "failed", dates=1, acting=1, failed=1)]
    out, err = io.StringIO(), io.StringIO()

    failed = follow(FakeApi(ended, {**REPORT, "success": False}), "m", 0, out=out, err=err)
    missing = follow(FakeApi(ended, None), "m", 0, out=out, err=err)

    assert failed == missing == EXIT_FAILED
    assert "ended failed without a report" in err.getvalue()
