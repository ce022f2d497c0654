"""The cases of ``make bench``: rounds of one backfill each way, the side that goes first alternating.

In a round both sides backfill the same fresh dates of twin targets (``X`` through the front door,
``POST /backfill-controller/api/backfills``; ``X_native`` through ``POST /api/v2/backfills``), one
after the other. Round 1 runs native first, round 2 the controller first, and so on: whatever one
side leaves behind (a busy scheduler, a warm cache, a growing metadata database) weighs on both
sides alike over the rounds, and the spread over the rounds shows how far one figure can be trusted.

Per side, from Airflow's own timestamps, in seconds after the request was sent: the request's end
(the controller run's ``end_date``: its head run, which waits for its continuation runs; the native
backfill's ``completed_at``), all target runs finished (the last ``end_date``), the first target
run queued (``queued_at``), the tail (last run's end to the request's end), and task processes per
date (the controller's: its target's and its own runs').

Run through ``python -m scripts.bench [--rounds 3] [--overhead 60,365,2000] [--realistic 120]
[--contention 365]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pendulum

from backfill_controller.client.rest import TRANSIENT_OR_DATABASE_ERROR, quote_id, raise_for
from backfill_controller.contract import CONTROLLER_DAG_ID
from scripts.bench_common import (
    FINISHED,
    FRONT_DOOR,
    NATIVE,
    Timeline,
    call,
    controller_runs,
    fmt,
    median,
    runs_path,
    seconds_since,
    target_runs,
    task_processes,
    wait_finished,
    wait_run,
)
from scripts.local_airflow import LocalAirflow

#: Under contention native backfill may start no run at all (apache/airflow#58554): the bench stops
#: waiting for it after twice the controller's longest time in the case, and never sooner than this.
NATIVE_CAP_FLOOR = 300.0
BLOCKER_DAG_ID = "bench_blocker"


@dataclass(frozen=True)
class Case:
    """``n`` daily dates of ``target`` (natively ``<target>_native``), ``rounds`` times.
    ``blockers``: runs of another DAG kept active during every round (the contention case)."""

    name: str
    target: str
    n: int
    max_active_runs: int
    chunk_size: int | None = None
    blockers: int = 0


@dataclass(frozen=True)
class Window:
    """``n`` consecutive daily logical dates from ``first``."""

    first: pendulum.DateTime
    n: int

    @property
    def days(self) -> tuple[str, str]:
        return self.first.to_date_string(), self.first.add(days=self.n - 1).to_date_string()

    @property
    def bounds(self) -> tuple[str, str]:
        """The REST filter bounds of the window's logical dates."""
        first, last = self.days
        return f"{first}T00:00:00Z", f"{last}T23:59:59Z"


@dataclass
class Side:
    """One backfill of a round. Seconds are after the request was sent; None: not reached."""

    how: str
    went_first: bool
    request_id: str
    request_end: float | None
    runs_finished: float | None
    first_queued: float | None
    tail: float | None
    processes_per_date: float
    succeeded: int
    finished: int
    waited: float
    note: str = ""


@dataclass
class Round:
    case: str
    n: int
    number: int
    native: Side
    controller: Side

    @property
    def first(self) -> str:
        return "native" if self.native.went_first else "controller"

    def ratio(self, runs_finished: bool = False) -> tuple[float | None, bool]:
        """Controller / native of the request's end (or of all runs finished), and whether it is an
        upper bound: native did not finish, and the bench's wait stands in for its time."""
        ours = self.controller.runs_finished if runs_finished else self.controller.request_end
        theirs = self.native.runs_finished if runs_finished else self.native.request_end
        if ours is None:
            return None, False
        if theirs is None:
            return ours / self.native.waited, True
        return ours / theirs, False


@dataclass
class Summary:
    """A case over its rounds: medians, and the ratio's spread (min and max over the rounds)."""

    case: str
    n: int
    rounds: int
    ratio: tuple[float | None, float | None, float | None]
    ratio_bound: bool
    ratio_runs: tuple[float | None, float | None, float | None]
    ratio_runs_bound: bool
    native_total: float | None
    controller_total: float | None
    native_first_queued: float | None
    controller_first_queued: float | None
    native_tail: float | None
    controller_tail: float | None
    native_processes: float | None
    controller_processes: float | None
    native_unfinished: int = 0  # rounds in which native did not finish (not in its medians)
    native_waited: float | None = None  # the bench's median wait in those rounds
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, rounds: list[Round]) -> Summary:
        def spread(runs_finished: bool) -> tuple[tuple[float | None, float | None, float | None], bool]:
            found = [r.ratio(runs_finished) for r in rounds]
            values = [v for v, _ in found if v is not None]
            return (median(values), min(values, default=None), max(values, default=None)), any(
                b for _, b in found
            )

        def med(pick: Callable[[Round], float | None]) -> float | None:
            return median([v for v in map(pick, rounds) if v is not None])

        ratio, bound = spread(False)
        ratio_runs, bound_runs = spread(True)
        return cls(
            case=rounds[0].case,
            n=rounds[0].n,
            rounds=len(rounds),
            ratio=ratio,
            ratio_bound=bound,
            ratio_runs=ratio_runs,
            ratio_runs_bound=bound_runs,
            native_total=med(lambda r: r.native.request_end),
            controller_total=med(lambda r: r.controller.request_end),
            native_first_queued=med(lambda r: r.native.first_queued),
            controller_first_queued=med(lambda r: r.controller.first_queued),
            native_tail=med(lambda r: r.native.tail),
            controller_tail=med(lambda r: r.controller.tail),
            native_processes=med(lambda r: r.native.processes_per_date),
            controller_processes=med(lambda r: r.controller.processes_per_date),
            native_unfinished=sum(r.native.request_end is None for r in rounds),
            native_waited=med(lambda r: r.native.waited if r.native.request_end is None else None),
            notes=[
                f"round {r.number} {s.how}: {s.note}"
                for r in rounds
                for s in (r.native, r.controller)
                if s.note
            ],
        )


def run_case(airflow: LocalAirflow, case: Case, windows: list[Window], timeout: float) -> Iterator[Round]:
    """Every round of ``case``, one window each, as it ends; the side that goes first alternates,
    native first in round 1. Each side is given ``timeout`` seconds; native under contention less
    (see :data:`NATIVE_CAP_FLOOR`). Prints each round."""
    longest = 0.0  # the controller's longest time so far in this case
    for number, window in enumerate(windows, 1):
        run_id = f"bench_{case.name}_{case.n}_r{number}"
        blockers = block(airflow, case.blockers) if case.blockers else []
        try:
            if number % 2 == 1:
                theirs = native_side(airflow, case, window, True, _native_wait(case, timeout, longest))
                ours = controller_side(airflow, case, window, False, timeout, run_id)
            else:
                ours = controller_side(airflow, case, window, True, timeout, run_id)
                longest = max(longest, ours.request_end or ours.waited)
                theirs = native_side(airflow, case, window, False, _native_wait(case, timeout, longest))
            longest = max(longest, ours.request_end or ours.waited)
        finally:
            unblock(airflow, blockers)
        done = Round(case.name, case.n, number, theirs, ours)
        print(round_line(done), flush=True)
        yield done


def _native_wait(case: Case, timeout: float, longest: float) -> float:
    """How long native gets: ``timeout``; under contention twice the controller's longest time so
    far, at least :data:`NATIVE_CAP_FLOOR` (before any controller side: that floor)."""
    return max(NATIVE_CAP_FLOOR, 2 * longest) if case.blockers else timeout


def native_side(airflow: LocalAirflow, case: Case, window: Window, went_first: bool, wait: float) -> Side:
    """Backfill the window of ``<target>_native`` with ``POST /api/v2/backfills``; stop waiting
    after ``wait`` seconds (then the backfill is cancelled, and its end is not reached)."""
    dag_id = f"{case.target}_native"
    first, last = window.days
    body = {
        "dag_id": dag_id,
        "from_date": f"{first}T00:00:00Z",
        "to_date": f"{last}T00:00:00Z",
        "reprocess_behavior": "none",
        "max_active_runs": case.max_active_runs,
        "run_backwards": False,
        "dag_run_conf": {},
    }
    moment, began = time.time(), time.monotonic()
    resp = airflow.api("POST", NATIVE, json=body, retry_on=TRANSIENT_OR_DATABASE_ERROR, attempts=8)
    raise_for(resp, f"POST {NATIVE}")
    backfill_id = int(resp.json()["id"])
    lo, hi = window.bounds
    done = wait_finished(airflow, dag_id, lo, hi, case.n, deadline=began + wait)
    note = ""
    if done < case.n:
        note = f"stopped waiting after {time.monotonic() - began:.0f} s, {done} of {case.n} runs finished"
        airflow.api("PUT", f"{NATIVE}/{backfill_id}/cancel", retry_on=TRANSIENT_OR_DATABASE_ERROR, attempts=8)
    completed = _completed_at(airflow, backfill_id) if done >= case.n else None
    waited = time.monotonic() - began
    runs = target_runs(airflow, dag_id, lo, hi)
    timeline = Timeline.of(runs, moment, case.n)
    if done < case.n:
        fail_open(airflow, dag_id, runs)
    processes = task_processes(airflow, dag_id, window=window.days)
    return _side(
        "native",
        went_first,
        str(backfill_id),
        seconds_since(moment, completed),
        timeline,
        processes,
        case,
        waited,
        note,
    )


def fail_open(airflow: LocalAirflow, dag_id: str, runs: list[dict[str, Any]]) -> None:
    """Mark the runs not finished failed, as the REST API's PATCH does: a cancelled native backfill
    fails only its queued runs, and its running ones would otherwise run on into the next side."""
    for run in runs:
        if run["state"] not in FINISHED:
            path = f"{runs_path(dag_id)}/{quote_id(run['dag_run_id'])}"
            airflow.api(
                "PATCH", path, json={"state": "failed"}, retry_on=TRANSIENT_OR_DATABASE_ERROR, attempts=8
            )


def _completed_at(airflow: LocalAirflow, backfill_id: int, timeout: float = 120) -> str | None:
    """The backfill's ``completed_at``, once the scheduler has marked it (a loop after its last run)."""
    deadline = time.monotonic() + timeout
    while True:
        completed = call(airflow, "GET", f"{NATIVE}/{backfill_id}").get("completed_at")
        if completed or time.monotonic() > deadline:
            return str(completed) if completed else None
        time.sleep(0.5)


def controller_side(
    airflow: LocalAirflow, case: Case, window: Window, went_first: bool, wait: float, run_id: str
) -> Side:
    """Backfill the window of ``target`` through the front door, as ``run_id`` (a retry of the
    request answers that run again); stop waiting after ``wait`` seconds (then it is cancelled)."""
    first, last = window.days
    conf: dict[str, Any] = {
        "dag_id": case.target,
        "start_date": first,
        "end_date": last,
        "max_active_runs": case.max_active_runs,
    }
    if case.chunk_size:
        conf["chunk_size"] = case.chunk_size
    moment, began = time.time(), time.monotonic()
    resp = airflow.api(
        "POST",
        FRONT_DOOR,
        json=conf,
        params={"run_id": run_id},
        retry_on=TRANSIENT_OR_DATABASE_ERROR,
        attempts=8,
    )
    raise_for(resp, f"POST {FRONT_DOOR}")
    run_id = str(resp.json()["dag_run_id"])
    head = wait_run(airflow, CONTROLLER_DAG_ID, run_id, deadline=began + wait)
    lo, hi = window.bounds
    note = ""
    if head["state"] not in FINISHED:
        done = wait_finished(airflow, case.target, lo, hi, case.n, deadline=0)
        note = f"stopped waiting after {time.monotonic() - began:.0f} s, {done} of {case.n} runs finished"
        cancel(airflow, run_id)
    else:  # the controller ended after its runs; this only guards against a run marked late
        wait_finished(airflow, case.target, lo, hi, case.n, deadline=time.monotonic() + 30)
    waited = time.monotonic() - began
    timeline = Timeline.of(target_runs(airflow, case.target, lo, hi), moment, case.n)
    own = [r["dag_run_id"] for r in controller_runs(airflow, run_id)]
    processes = task_processes(airflow, case.target, window=window.days)
    processes += task_processes(airflow, CONTROLLER_DAG_ID, run_ids=own)
    end = seconds_since(moment, head.get("end_date")) if head["state"] in FINISHED else None
    return _side("controller", went_first, run_id, end, timeline, processes, case, waited, note)


def cancel(airflow: LocalAirflow, run_id: str) -> int:
    """Cancel a backfill through the front door's control; the HTTP status."""
    path = f"{FRONT_DOOR}/{quote_id(run_id)}/cancel"
    return airflow.api("POST", path, json={}, retry_on=TRANSIENT_OR_DATABASE_ERROR, attempts=8).status_code


def _side(
    how: str,
    went_first: bool,
    request_id: str,
    request_end: float | None,
    timeline: Timeline,
    processes: int,
    case: Case,
    waited: float,
    note: str,
) -> Side:
    tail = None
    if request_end is not None and timeline.last_end is not None:
        tail = request_end - timeline.last_end
    return Side(
        how=how,
        went_first=went_first,
        request_id=request_id,
        request_end=request_end,
        runs_finished=timeline.last_end,
        first_queued=timeline.first_queued,
        tail=tail,
        processes_per_date=round(processes / case.n, 2),
        succeeded=timeline.succeeded,
        finished=timeline.finished,
        waited=round(waited, 1),
        note=note,
    )


def block(airflow: LocalAirflow, count: int, timeout: float = 300) -> list[str]:
    """``count`` runs of the blocker DAG (a deferred one-hour wait), once all are running."""
    runs = [airflow.trigger(BLOCKER_DAG_ID) for _ in range(count)]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(airflow.run_state(BLOCKER_DAG_ID, r) == "running" for r in runs) == count:
            break
        time.sleep(2)
    return runs


def unblock(airflow: LocalAirflow, runs: list[str]) -> None:
    for run_id in runs:
        path = f"/api/v2/dags/{BLOCKER_DAG_ID}/dagRuns/{quote_id(run_id)}"
        airflow.api("PATCH", path, json={"state": "failed"}, retry_on=TRANSIENT_OR_DATABASE_ERROR, attempts=8)


# --------------------------------------------------------------------------- printing


def _ratio_text(values: tuple[float | None, float | None, float | None], bound: bool) -> str:
    mid, lo, hi = values
    if mid is None or lo is None or hi is None:
        return "-"
    at_most = "< " if bound else ""
    return f"{at_most}{mid:.2f} ({lo:.2f}-{hi:.2f})"


def _side_text(side: Side) -> str:
    unfinished = "" if side.request_end is not None else f" [{side.note or 'not finished'}]"
    return (
        f"{side.how} end {fmt(side.request_end)}, runs {fmt(side.runs_finished)}, "
        f"first queued {fmt(side.first_queued, digits=2)}, tail {fmt(side.tail)}, "
        f"{side.processes_per_date:.2f} processes/date, "
        f"{side.finished} runs finished, {side.succeeded} succeeded{unfinished}"
    )


def round_line(done: Round) -> str:
    ratio, bound = done.ratio()
    shown = "-" if ratio is None else f"{'< ' if bound else ''}{ratio:.2f}"
    return (
        f"{done.case} N={done.n} round {done.number} ({done.first} first): ratio {shown}\n"
        f"    {_side_text(done.native)}\n    {_side_text(done.controller)}"
    )


def _native_total(summary: Summary) -> str:
    unfinished = summary.native_unfinished
    if not unfinished:
        return fmt(summary.native_total)
    waited = f"> {fmt(summary.native_waited)}" if summary.native_total is None else fmt(summary.native_total)
    return f"{waited} ({unfinished} of {summary.rounds} rounds unfinished)"


def summary_lines(summary: Summary) -> list[str]:
    s = summary
    lines = [
        f"{s.case} N={s.n}, {s.rounds} rounds: ratio controller/native, request end "
        f"{_ratio_text(s.ratio, s.ratio_bound)}; all runs finished "
        f"{_ratio_text(s.ratio_runs, s.ratio_runs_bound)}",
        f"    medians: total native {_native_total(s)}, controller {fmt(s.controller_total)}; "
        f"first queued native {fmt(s.native_first_queued, digits=2)}, "
        f"controller {fmt(s.controller_first_queued, digits=2)}; "
        f"tail native {fmt(s.native_tail)}, controller {fmt(s.controller_tail)}; "
        f"processes/date native {fmt(s.native_processes, '', 2)}, "
        f"controller {fmt(s.controller_processes, '', 2)}",
    ]
    lines += [f"    {note}" for note in s.notes]
    return lines


def summary_table(summaries: list[Summary]) -> str:
    lines = [
        "| case | N | rounds | ratio, request end: median (min-max) | ratio, runs finished | "
        "total native | total controller | first queued native / controller | "
        "tail native / controller | processes/date native / controller |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.case} | {s.n:,} | {s.rounds} | {_ratio_text(s.ratio, s.ratio_bound)} "
            f"| {_ratio_text(s.ratio_runs, s.ratio_runs_bound)} "
            f"| {_native_total(s)} | {fmt(s.controller_total)} "
            f"| {fmt(s.native_first_queued, digits=2)} / {fmt(s.controller_first_queued, digits=2)} "
            f"| {fmt(s.native_tail)} / {fmt(s.controller_tail)} "
            f"| {fmt(s.native_processes, '', 2)} / {fmt(s.controller_processes, '', 2)} |"
        )
    return "\n".join(lines)


def rounds_table(rounds: list[Round]) -> str:
    lines = [
        "| case | N | round | first | native end | native runs | native first queued | native tail "
        "| controller end | controller runs | controller first queued | controller tail | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        ratio, bound = r.ratio()
        shown = "-" if ratio is None else f"{'< ' if bound else ''}{ratio:.2f}"
        cells = [r.case, f"{r.n:,}", str(r.number), r.first]
        for side in (r.native, r.controller):
            end = fmt(side.request_end) if side.request_end is not None else f"> {side.waited} s"
            cells += [end, fmt(side.runs_finished), fmt(side.first_queued, digits=2), fmt(side.tail)]
        lines.append("| " + " | ".join([*cells, shown]) + " |")
    return "\n".join(lines)
