"""The estimated end of a running backfill (:mod:`backfill_controller.domain.eta`).

Besides single cases, simulated backfills: ``window`` slots each run one date after another,
``gap`` seconds apart (the scheduler's latency), and the estimate taken at given moments is
compared with the simulated end. The requirement: on a target with uniform run times, once 25 %
of the dates have finished, the estimated end is within 25 % of the time really left.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from backfill_controller.domain.eta import Basis, EtaFacts, RunTimes, estimate, finished_runs, needs_recent

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Simulated:
    """Each date's run as ``(start, end)`` seconds after the backfill started."""

    runs: list[tuple[float, float]]
    window: int

    @property
    def end(self) -> float:
        return max(end for _, end in self.runs)

    def facts(self, now: float, recent: Sequence[float] = ()) -> EtaFacts:
        """What the backfill's page reads at ``now``: runs started by then, dates not finished."""
        started = [
            RunTimes(at(start), at(end) if end <= now else None) for start, end in self.runs if start <= now
        ]
        unfinished = sum(1 for _, end in self.runs if end > now)
        return EtaFacts(started, unfinished, self.window, at(now), since=T0, recent=recent)

    def error(self, now: float) -> float:
        """``|estimated end - end|`` as a share of the time left at ``now``."""
        eta = estimate(self.facts(now))
        assert eta is not None
        return abs((eta.end - at(self.end)).total_seconds()) / (self.end - now)

    def moment_finished(self, share: float) -> float:
        """When ``share`` of the dates have finished."""
        ends = sorted(end for _, end in self.runs)
        return ends[max(0, math.ceil(share * len(ends)) - 1)]


def simulate(
    dates: int,
    window: int,
    durations: Sequence[float],
    gap: float = 0.0,
    stagger: float = 0.0,
) -> Simulated:
    """A backfill that keeps ``window`` runs going: slot ``k`` starts ``k * stagger`` s in, and
    each slot starts its next date ``gap`` s after its run ended; date ``i`` lasts ``durations[i]``
    (the list repeats)."""
    free = [k * stagger for k in range(window)]
    runs = []
    for i in range(dates):
        slot = min(range(window), key=free.__getitem__)
        start = free[slot]
        end = start + durations[i % len(durations)]
        runs.append((start, end))
        free[slot] = end + gap
    return Simulated(runs, window)


# --------------------------------------------------------------------------- the requirement

UNIFORM = [
    # dates, window, duration, gap, stagger
    (20, 4, 60.0, 0.0, 0.0),
    (20, 4, 60.0, 5.0, 0.5),
    (100, 1, 30.0, 2.0, 0.0),
    (100, 8, 10.0, 3.0, 0.2),
    (365, 16, 5.0, 2.5, 0.1),  # latency half a run: the worst the scheduler does to short runs
    (1000, 64, 120.0, 6.0, 0.05),
    (7, 3, 600.0, 10.0, 1.0),
    (10_000, 48, 4.0, 1.0, 0.01),
]


@pytest.mark.parametrize(("dates", "window", "duration", "gap", "stagger"), UNIFORM)
def test_after_a_quarter_of_the_dates_a_uniform_backfill_ends_within_a_quarter_of_the_estimate(
    dates, window, duration, gap, stagger
):
    backfill = simulate(dates, window, [duration], gap, stagger)
    now = backfill.moment_finished(0.25)

    error = backfill.error(now)

    print(f"{dates} dates, window {window}, {duration} s + {gap} s: error {error:.1%} of the time left")
    assert error <= 0.25


@pytest.mark.parametrize(("dates", "window", "duration", "gap", "stagger"), UNIFORM)
def test_it_stays_within_five_percent_from_then_on(dates, window, duration, gap, stagger):
    backfill = simulate(dates, window, [duration], gap, stagger)
    start = backfill.moment_finished(0.25)
    moments = [start + (backfill.end - start) * k / 100 for k in range(100)]

    errors = [backfill.error(now) for now in moments]

    assert max(errors) <= 0.05, max(errors)  # the figure the module's docstring gives


def test_without_latency_a_uniform_backfill_is_estimated_exactly_once_a_run_finished():
    backfill = simulate(40, 4, [60.0])
    moments = [61.0, 90.0, 119.0, 300.0, 599.0]

    assert [round(backfill.error(now), 9) for now in moments] == [0.0] * len(moments)


def test_before_any_run_finished_a_uniform_backfill_of_the_targets_usual_runs_is_estimated_exactly():
    backfill = simulate(30, 4, [60.0])

    eta = estimate(backfill.facts(30.0, recent=[60.0]))

    assert eta is not None and eta.basis == Basis.RECENT_RUNS
    assert eta.end == at(backfill.end)


def test_run_times_that_vary_keep_it_near_the_end():
    rng = random.Random(7)
    durations = [rng.uniform(40.0, 80.0) for _ in range(400)]
    backfill = simulate(400, 8, durations, gap=3.0, stagger=0.5)

    errors = [backfill.error(backfill.moment_finished(share)) for share in (0.25, 0.5, 0.75)]

    assert max(errors) <= 0.15, errors


def test_a_plain_finished_count_would_miss_by_far_where_this_does_not():
    """Just before a wave ends, ``finished / elapsed`` sees one wave in two; the running runs'
    progress is what keeps the estimate right."""
    backfill = simulate(20, 4, [60.0])
    now = 119.0  # the first wave (4 dates) finished, the second nearly
    naive_rate = 4 / now
    naive_end = now + 16 / naive_rate

    assert abs(naive_end - backfill.end) / (backfill.end - now) > 0.5
    assert backfill.error(now) < 0.01


# --------------------------------------------------------------------------- single cases


def test_the_rest_runs_slot_by_slot_at_the_backfills_own_pace():
    runs = [RunTimes(at(0), at(100)), RunTimes(at(0), at(100)), RunTimes(at(100)), RunTimes(at(120))]

    eta = estimate(EtaFacts(runs, unfinished=6, window=2, now=at(150)))

    # D = 100 s; work: 2 finished + 0.5 + 0.3 = 2.8 runs in 150 s, so each of the 2 slots starts
    # a run every C = 2 * 150 / 2.8 s (latency C - D). The running runs end in 50 and 70 s; the
    # 4 dates left run two to a slot: the later slot ends 70 + (C - D) + 2 C - (C - D) from now.
    cycle = 2 * 150 / 2.8
    assert eta is not None and eta.basis == Basis.FINISHED_RUNS
    assert eta.remaining_seconds == pytest.approx(70 + 2 * cycle)
    assert eta.end == at(150) + timedelta(seconds=eta.remaining_seconds)


def test_scheduler_latency_between_runs_slows_the_estimate_down():
    quick = [RunTimes(at(0), at(60)), RunTimes(at(60))]
    slow = [RunTimes(at(0), at(60)), RunTimes(at(90))]  # the next run started 30 s after

    eta_quick = estimate(EtaFacts(quick, unfinished=5, window=1, now=at(90)))
    eta_slow = estimate(EtaFacts(slow, unfinished=5, window=1, now=at(90)))

    assert eta_quick is not None and eta_slow is not None
    assert eta_slow.remaining_seconds > eta_quick.remaining_seconds


def test_the_last_run_needs_at_least_what_it_has_left():
    runs = [RunTimes(at(0), at(100)) for _ in range(9)] + [RunTimes(at(100))]

    eta = estimate(EtaFacts(runs, unfinished=1, window=10, now=at(130)))

    assert eta is not None and eta.remaining_seconds == pytest.approx(70.0)


def test_a_date_not_started_needs_a_whole_run():
    runs = [RunTimes(at(0), at(100)) for _ in range(10)]

    eta = estimate(EtaFacts(runs, unfinished=1, window=10, now=at(100)))

    assert eta is not None and eta.remaining_seconds == pytest.approx(100.0)


def test_a_queued_run_has_done_nothing():
    queued = [RunTimes(at(0), at(100)), RunTimes(None)]

    eta = estimate(EtaFacts(queued, unfinished=1, window=1, now=at(100)))

    assert eta is not None and eta.remaining_seconds == pytest.approx(100.0)


def test_an_overdue_run_is_due_now_but_slows_the_rate():
    on_time = [RunTimes(at(0), at(100)), RunTimes(at(100))]

    due = estimate(EtaFacts(on_time, unfinished=1, window=1, now=at(400)))
    later = estimate(EtaFacts(on_time, unfinished=3, window=1, now=at(400)))
    sooner = estimate(EtaFacts(on_time, unfinished=3, window=1, now=at(150)))

    assert due is not None and due.remaining_seconds == 0.0 and due.end == at(400)
    assert later is not None and sooner is not None
    assert later.remaining_seconds > sooner.remaining_seconds


def test_before_any_run_finished_it_takes_the_targets_recent_runs_and_the_window():
    running = [RunTimes(at(0)), RunTimes(at(0))]

    eta = estimate(EtaFacts(running, unfinished=10, window=2, now=at(30), recent=[50.0, 70.0]))

    # D = 60 s, 2 at once: 10 - 2 * 0.5 = 9 runs' worth at 2 per 60 s.
    assert eta is not None and eta.basis == Basis.RECENT_RUNS
    assert eta.remaining_seconds == pytest.approx(270.0)


def test_recent_durations_are_not_used_once_a_run_finished():
    runs = [RunTimes(at(0), at(10))]

    eta = estimate(EtaFacts(runs, unfinished=1, window=1, now=at(10), recent=[1000.0]))

    assert eta is not None and eta.basis == Basis.FINISHED_RUNS and eta.remaining_seconds == 10.0


@pytest.mark.parametrize(
    "facts",
    [
        EtaFacts([RunTimes(at(0), at(10))], unfinished=0, window=4, now=at(20)),
        EtaFacts([], unfinished=0, window=4, now=at(0), recent=[10.0]),
        EtaFacts([RunTimes(at(0))], unfinished=3, window=4, now=at(5)),
        EtaFacts([], unfinished=3, window=4, now=at(5), recent=[0.0]),
    ],
    ids=["all finished", "nothing acting", "no finished run, no history", "history of 0 s runs"],
)
def test_it_says_nothing_when_nothing_is_left_or_nothing_to_go_on(facts):
    assert estimate(facts) is None


def test_a_run_that_ended_before_the_backfill_started_is_not_its_work():
    adopted = RunTimes(at(-500), at(-400))
    runs = [adopted, RunTimes(at(0), at(100))]

    assert finished_runs(runs, since=at(0)) == [RunTimes(at(0), at(100))]
    assert needs_recent([adopted, RunTimes(at(0))], since=at(0))
    eta = estimate(EtaFacts(runs, unfinished=1, window=1, now=at(100), since=at(0)))
    assert eta is not None and eta.remaining_seconds == pytest.approx(100.0)


def test_a_run_that_started_before_the_backfill_counts_from_when_it_started():
    runs = [RunTimes(at(-1000), at(100)), RunTimes(at(0), at(100))]

    eta = estimate(EtaFacts(runs, unfinished=2, window=2, now=at(100), since=at(0)))

    # 2 runs of the backfill's 100 s, though one started 1,100 s ago.
    assert eta is not None and eta.remaining_seconds == pytest.approx(100.0)


def test_a_window_below_one_counts_as_one():
    eta = estimate(EtaFacts([], unfinished=2, window=0, now=at(0), recent=[10.0]))

    assert eta is not None and eta.remaining_seconds == pytest.approx(20.0)


def test_a_run_of_no_duration_does_not_divide_by_zero():
    eta = estimate(EtaFacts([RunTimes(at(0), at(0))], unfinished=2, window=1, now=at(0)))

    assert eta is not None and eta.remaining_seconds >= 0


def test_it_is_json_ready():
    eta = estimate(EtaFacts([RunTimes(at(0), at(60))], unfinished=2, window=1, now=at(60)))

    assert eta is not None
    assert eta.to_dict() == {
        "end": "2024-01-01T00:03:00+00:00",
        "remaining_seconds": 120.0,
        "basis": "finished_runs",
    }
