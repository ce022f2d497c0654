"""When a running backfill will end: its estimated end time and the time it has left.

Computed here and nowhere else: the Backfills page's API answers it (``eta``), the page and the
CLI show it. Pure: the caller gathers the facts (:class:`EtaFacts`) its own way.

The estimate, in seconds:

* ``D``, how long a run takes: the mean duration of the backfill's finished runs (before any of
  them has finished: of the target's recent runs);
* the backfill's pace: since its first run started (``t0``) it has done ``work`` = its finished
  runs plus, for each running run, ``min(1, elapsed / D)`` of one. Each of the ``window`` runs it
  keeps going (a *slot*) thus starts a run every ``C = window × (now - t0) / work`` (at least
  ``D``): a run and the latency ``L = C - D`` before the slot's next run starts;
* the rest, projected slot by slot: a running run ends ``D - elapsed`` from now (now, if it is
  overdue) and its slot starts the next one ``L`` later; an idle slot starts one ``L`` after its
  last run ended. The dates not running yet (queued or not started) go, one after another, to the
  slot free first, ``C`` each. The backfill ends when its last slot does.

Why the backfill's own pace rather than ``D × unfinished / window``: the clock also sees what slows
a backfill down and no run's duration shows: the scheduler's latency between one run ending and
the next starting, the target's own ``max_active_runs`` or pools holding runs queued, a window not
kept full. Why count the running runs' progress: a plain ``finished / elapsed`` saw-tooths by up
to a window of runs (just before a wave of runs ends none of its work counts), which misjudges
the pace by a large factor early on. Why slots rather than ``unfinished / rate``: the last dates
run a few at a time, not at the full window's rate (7 dates, 3 at a time, take three runs' time,
not 7/3). With uniform run times the estimate is exact without latency and, in simulated
backfills with latency up to half a run, within 5 % of the time left once a quarter of the dates
have finished (``tests/unit/test_eta.py``).

Before any run of the backfill has finished there is no pace to measure: ``D`` is the target's
recent runs' mean and ``L`` is 0 (basis ``recent_runs``), so the estimate errs early until the
first run finishes.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> at = lambda minutes: t0 + timedelta(minutes=minutes)
>>> # 10 dates of 10 minutes, 2 at a time: 2 finished, 2 half done after 15 minutes.
>>> runs = [RunTimes(at(0), at(10)), RunTimes(at(0), at(10)), RunTimes(at(10)), RunTimes(at(10))]
>>> eta = estimate(EtaFacts(runs, unfinished=8, window=2, now=at(15)))
>>> eta.end == at(50), eta.remaining_seconds, eta.basis.value
(True, 2100.0, 'finished_runs')
>>> estimate(EtaFacts([], unfinished=3, window=2, now=at(0), recent=[300.0, 900.0])).remaining_seconds
1200.0
>>> estimate(EtaFacts([], unfinished=3, window=2, now=at(0))) is None  # nothing to go on
True
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from statistics import fmean
from typing import Any

#: Shortest run duration the estimate works with, in seconds (a run's clock may read 0 s).
MIN_DURATION = 0.001


class Basis(StrEnum):
    """What an estimate rests on."""

    FINISHED_RUNS = "finished_runs"
    """The backfill's finished runs: their mean duration and its pace since it started."""
    RECENT_RUNS = "recent_runs"
    """None of its runs has finished: the target's recent runs' mean duration and the window."""


@dataclass(frozen=True)
class RunTimes:
    """When one target run of the backfill started and ended (None: not yet)."""

    start: datetime | None
    end: datetime | None = None


@dataclass(frozen=True)
class EtaFacts:
    """What the estimate needs about one backfill. Datetimes are timezone-aware."""

    runs: Sequence[RunTimes]
    """The target runs of the dates it has started: finished, running or queued."""
    unfinished: int
    """Its dates still to finish (not started yet, queued or running)."""
    window: int
    """Most of its runs that run at once."""
    now: datetime
    since: datetime | None = None
    """When the backfill started: a run that ended before is not its work (an adopted run), and
    one that started before counts from then."""
    recent: Sequence[float] = ()
    """Durations in seconds of the target's recent runs (needed only when :func:`needs_recent`)."""


@dataclass(frozen=True)
class Eta:
    end: datetime
    remaining_seconds: float
    basis: Basis

    def to_dict(self) -> dict[str, Any]:
        return {
            "end": self.end.isoformat(),
            "remaining_seconds": round(self.remaining_seconds, 1),
            "basis": self.basis.value,
        }


def finished_runs(runs: Sequence[RunTimes], since: datetime | None = None) -> list[RunTimes]:
    """The runs that count as the backfill's finished work: started, and ended after ``since``."""
    return [r for r in runs if r.start and r.end and (since is None or r.end > since)]


def needs_recent(runs: Sequence[RunTimes], since: datetime | None = None) -> bool:
    """Whether an estimate from ``runs`` takes the target's recent runs' durations.

    >>> from datetime import UTC, datetime
    >>> needs_recent([RunTimes(datetime(2024, 1, 1, tzinfo=UTC))])  # running, not finished
    True
    """
    return not finished_runs(runs, since)


def _seconds(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds())


def _start(run: RunTimes, since: datetime | None) -> datetime:
    assert run.start is not None
    return run.start if since is None else max(run.start, since)


def _duration(facts: EtaFacts, done: Sequence[RunTimes]) -> tuple[float, Basis] | None:
    """``D`` and what it rests on (None: nothing to go on)."""
    if done:
        seconds = fmean(_seconds(r.end, _start(r, facts.since)) for r in done if r.end)
        return max(MIN_DURATION, seconds), Basis.FINISHED_RUNS
    recent = [d for d in facts.recent if d > 0]
    return (max(MIN_DURATION, fmean(recent)), Basis.RECENT_RUNS) if recent else None


def _cycle(facts: EtaFacts, done: Sequence[RunTimes], running: Sequence[RunTimes], duration: float) -> float:
    """``C``: seconds from one run's start to the next's in a slot, at the backfill's pace."""
    if not done:
        return duration
    first = min(_start(r, facts.since) for r in (*done, *running))
    span = _seconds(facts.now, first)
    work = len(done) + sum(min(1.0, _seconds(facts.now, _start(r, None)) / duration) for r in running)
    slots = max(facts.window, len(running), 1)
    return max(duration, slots * span / work) if span > 0 else duration


def _slots(
    facts: EtaFacts, done: Sequence[RunTimes], running: Sequence[RunTimes], duration: float, latency: float
) -> list[tuple[float, float]]:
    """Each slot's ``(end of its running run or 0, start of its next run)``, in seconds from now,
    sorted by the latter."""
    slots = []
    for run in running:
        left = max(0.0, duration - _seconds(facts.now, _start(run, None)))
        slots.append((left, left + latency))
    idle = max(facts.window, 1) - len(running)
    ended = heapq.nlargest(idle, ((r.end - facts.now).total_seconds() for r in done if r.end))
    slots += [(0.0, max(0.0, end + latency)) for end in ended]
    slots += [(0.0, 0.0)] * (idle - len(ended))
    return sorted(slots, key=lambda slot: slot[1])


def estimate(facts: EtaFacts) -> Eta | None:
    """When the backfill ends (see the module's docstring); None when no date is left to finish
    or there is nothing to go on (no finished run and no recent durations)."""
    done = finished_runs(facts.runs, facts.since)
    found = _duration(facts, done) if facts.unfinished > 0 else None
    if found is None:
        return None
    duration, basis = found
    running = [r for r in facts.runs if r.start and r.end is None]
    cycle = _cycle(facts, done, running, duration)
    slots = _slots(facts, done, running, duration, cycle - duration)
    rounds, extra = divmod(max(0, facts.unfinished - len(running)), len(slots))
    remaining = 0.0
    for k, (end, start) in enumerate(slots):
        runs = rounds + (k < extra)
        # A slot's last run ends the latency before the next would start.
        remaining = max(remaining, start + runs * cycle - (cycle - duration) if runs else end)
    return Eta(facts.now + timedelta(seconds=remaining), remaining, basis)
