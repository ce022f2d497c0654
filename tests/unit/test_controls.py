"""Which control fits which phase, the time a backfill spends paused, and a re-run's request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backfill_controller.domain.controls import Applied, Control, paused, paused_seconds, refusal, rerun_conf
from backfill_controller.domain.state import Phase

T = datetime(2024, 1, 1, tzinfo=UTC)

FITS = {
    # control: the phases (and paused or not) in which it is accepted
    Control.PAUSE: {(Phase.QUEUED, False), (Phase.PLANNING, False), (Phase.RUNNING, False)},
    Control.RESUME: {(Phase.QUEUED, True), (Phase.PLANNING, True), (Phase.PAUSED, True)},
    Control.CANCEL: {(p, is_paused) for p in (Phase.QUEUED, Phase.PLANNING) for is_paused in (False, True)}
    | {(Phase.RUNNING, False), (Phase.PAUSED, True)},
    Control.RERUN_FAILED: {(p, False) for p in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)},
}
CASES = [
    (control, where, is_paused)
    for control in Control
    for where in Phase
    for is_paused in (False, True)
    if not (where is Phase.PAUSED and not is_paused)  # a paused phase is always paused
    if not (where is Phase.RUNNING and is_paused)  # ... and a running one is not
    if not (control is Control.RERUN_FAILED and is_paused)
]


@pytest.mark.parametrize(
    ("control", "where", "is_paused"),
    CASES,
    ids=[f"{c.value}-{w.value}{'-paused' if p else ''}" for c, w, p in CASES],
)
def test_each_control_fits_its_phases_only_and_a_refusal_names_the_phase(control, where, is_paused):
    why = refusal(control, where, is_paused, failed_dates=1)
    if (where, is_paused) in FITS[control]:
        assert why is None
    else:
        assert why is not None and (where.value in why or "paused already" in why)


def test_a_backfill_with_no_failed_date_has_nothing_to_re_run():
    assert refusal(Control.RERUN_FAILED, Phase.SUCCEEDED, False, failed_dates=0) == (
        "the backfill is succeeded but no date of it ended failed"
    )


def test_paused_time_adds_up_the_pauses_and_counts_a_pause_still_on_to_now():
    history = [
        Applied(Control.PAUSE, "a", T),
        Applied(Control.PAUSE, "b", T + timedelta(seconds=5)),  # a second pause changes nothing
        Applied(Control.RESUME, "a", T + timedelta(seconds=20)),
        Applied(Control.CANCEL, "a", T + timedelta(seconds=25)),
        Applied(Control.PAUSE, "a", T + timedelta(seconds=30)),
    ]
    assert paused(history) is True
    assert paused_seconds(history, T + timedelta(seconds=40)) == 30.0
    assert paused_seconds([], T) == 0.0 and paused([]) is False


def test_an_applied_control_round_trips():
    applied = Applied(Control.RERUN_FAILED, "ann", T, "manual__2")
    assert Applied.from_dict(applied.to_dict()) == applied


def test_a_re_run_keeps_the_target_selection_and_conf_and_runs_exactly_the_failed_dates():
    conf = {
        "dag_id": "sales",
        "start_date": "2024-01-01",
        "end_date": "2024-01-31",
        "reprocess": "missing",
        "task_regex": "^load",
        "include_downstream": True,
        "conf": {"region": "eu"},
        "max_active_runs": 3,
        "dry_run": False,
        "reason": "first load",
        "run_backwards": True,
    }
    assert rerun_conf(conf, ["2024-01-05T00:00:00+00:00"], "manual__1") == {
        "dag_id": "sales",
        "task_regex": "^load",
        "include_downstream": True,
        "conf": {"region": "eu"},
        "max_active_runs": 3,
        "run_backwards": True,
        "dates": ["2024-01-05T00:00:00+00:00"],
        "reprocess": "failed",
        "reason": "re-run of failed dates of manual__1",
    }
