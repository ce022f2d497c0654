"""Pausing, resuming, cancelling and re-running the failed dates of a backfill, over its record.

Each control answers 404 for a run that is no backfill, 403 without the right (naming no target
the user may not read), 409 where it does not fit the backfill's phase (naming the phase); a
refusal changes nothing. An applied control is kept in the backfill's history and Airflow's audit
log; cancelling stops every segment and fails the queued target runs; re-running starts, through
the front door and as the caller, a backfill of exactly the dates that ended failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.controls import Applied, Control
from backfill_controller.server import actions, ledger
from tests.unit.backfill_records import (
    CONTROL,
    HEAD,
    NOW,
    OPERATE,
    READ,
    TARGET,
    AuthManager,
    Backfills,
    controller_database,
    day,
    logical,
    user,
)

#: Ann may operate backfills of the target; Cy may not change the controller's runs; Bo may not
#: edit the target's runs; Eve may not read the target.
ANN, BO, CY, EVE = user("ann"), user("bo"), user("cy"), user("eve")
GRANTS = {
    "ann": {CONTROLLER_DAG_ID: CONTROL, TARGET: OPERATE},
    "bo": {CONTROLLER_DAG_ID: CONTROL, TARGET: READ},
    "cy": {CONTROLLER_DAG_ID: READ, TARGET: OPERATE},
    "eve": {CONTROLLER_DAG_ID: CONTROL},
}
SWITCHES = (Control.PAUSE, Control.RESUME, Control.CANCEL)


@pytest.fixture
def db(monkeypatch) -> Iterator[Backfills]:
    manager = AuthManager(GRANTS)
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: manager)
    monkeypatch.setattr("backfill_controller.server.ui.get_auth_manager", lambda: manager)
    with Session(controller_database()) as session:
        yield Backfills(session, NOW)


@pytest.fixture
def started(monkeypatch) -> list[tuple[dict[str, Any], Any]]:
    """What the front door was asked to start (conf, user); it answers with a new run id."""
    asked: list[tuple[dict[str, Any], Any]] = []

    def start_backfill(conf: dict[str, Any], who: Any, session: Session, request: Any) -> dict[str, Any]:
        asked.append((conf, who))
        return {"dag_id": CONTROLLER_DAG_ID, "dag_run_id": "manual__rerun", "dates": len(conf["dates"])}

    monkeypatch.setattr(actions, "start_backfill", start_backfill)
    return asked


def apply(control: Control, run_id: str, who: Any, db: Backfills) -> dict[str, Any]:
    if control is Control.CANCEL:
        return actions.cancel(run_id, who, db.session)
    if control is Control.RERUN_FAILED:
        return actions.rerun_failed(run_id, who, db.session, request=None)
    return actions.switch(control, run_id, who, db.session)


def refused(control: Control, run_id: str, who: Any, db: Backfills) -> HTTPException:
    with pytest.raises(HTTPException) as refusal:
        apply(control, run_id, who, db)
    return refusal.value


def pause(db: Backfills, by: str = "ann") -> None:
    ledger.add(db.session, HEAD, Applied(Control.PAUSE, by, datetime.now(UTC)))


def in_phase(db: Backfills, phase: str) -> None:
    """A backfill of four dates in segments of two, in ``phase``, with the target runs to match."""
    if phase == "queued":
        db.backfill(state="queued", segment_size=2)
    elif phase == "planning":
        db.backfill(state="running", waits=True)
    elif phase in ("running", "paused"):
        db.backfill(state="running", segment_size=2)
        db.targets({1: "success", 2: "running"})
        if phase == "paused":
            pause(db)
    elif phase == "planned":
        db.backfill(state="success", dry_run=True)
    elif phase == "succeeded":
        db.backfill(state="success", segment_size=2)
        db.targets(dict.fromkeys(range(1, 5), "success"))
    elif phase == "cancelling":
        db.backfill(state="failed", segment_size=2)
        db.targets({1: "running"})
    elif phase in ("cancelled", "failed"):
        head = db.backfill(state="failed", segment_size=2)
        db.targets({1: "success", 2: "failed"})
        if phase == "failed":
            db.reported(head.id)
    else:
        raise AssertionError(phase)


def history(db: Backfills) -> list[tuple[str, str | None, str | None]]:
    return [(a.control.value, a.by, a.detail) for a in ledger.histories(db.session, [HEAD])[HEAD]]


def audit_log(db: Backfills) -> list[tuple[str, str | None, str | None, str | None, dict[str, Any]]]:
    from airflow.models.log import Log

    rows = db.session.scalars(select(Log).order_by(Log.id))
    return [(r.event, r.owner, r.dag_id, r.run_id, json.loads(r.extra)) for r in rows]


@pytest.mark.parametrize("control", list(Control), ids=[c.value for c in Control])
@pytest.mark.parametrize("run_id", ["manual__nothing", "segment"])
def test_a_run_that_is_no_backfill_is_not_found(db, started, control, run_id):
    in_phase(db, "running")
    if run_id == "segment":
        run_id = db.continuation(1, "running")

    refusal = refused(control, run_id, ANN, db)

    assert (refusal.status_code, refusal.detail) == (
        404,
        {"message": f"no backfill has the run id {run_id!r}"},
    )


@pytest.mark.parametrize("control", SWITCHES, ids=[c.value for c in SWITCHES])
def test_a_user_who_may_not_change_the_controllers_runs_may_not_pause_resume_or_cancel(db, control):
    in_phase(db, "paused" if control is Control.RESUME else "running")

    refusal = refused(control, HEAD, CY, db)

    assert (refusal.status_code, refusal.detail) == (
        403,
        {
            "message": f"cy may not change the runs of {CONTROLLER_DAG_ID!r}: "
            "missing right PUT on its DAG runs",
            "missing": ["PUT on its DAG runs"],
        },
    )


@pytest.mark.parametrize("control", SWITCHES, ids=[c.value for c in SWITCHES])
def test_a_user_who_may_not_edit_the_targets_runs_may_not_pause_resume_or_cancel(db, control):
    in_phase(db, "paused" if control is Control.RESUME else "running")

    refusal = refused(control, HEAD, BO, db)

    assert (refusal.status_code, refusal.detail) == (
        403,
        {
            "message": f"bo may not operate a backfill of {TARGET!r}: missing right PUT on its DAG runs",
            "missing": ["PUT on its DAG runs"],
        },
    )


#: Each control with a phase it does not fit: a refusal for the target's sake names no phase either.
UNFIT = {
    Control.PAUSE: "succeeded",
    Control.RESUME: "running",
    Control.CANCEL: "succeeded",
    Control.RERUN_FAILED: "running",
}


@pytest.mark.parametrize("control, phase", UNFIT.items(), ids=[c.value for c in UNFIT])
def test_a_user_who_may_not_read_the_target_learns_nothing_of_it(db, started, control, phase):
    in_phase(db, phase)

    refusal = refused(control, HEAD, EVE, db)

    assert (refusal.status_code, refusal.detail) == (403, {"message": "eve may not operate this backfill"})


#: A control, a phase it does not fit and the refusal.
MISFITS = [
    (Control.PAUSE, "paused", "the backfill is paused already"),
    (Control.RESUME, "running", "the backfill is running, not paused: there is nothing to resume"),
    (
        Control.PAUSE,
        "succeeded",
        "the backfill is succeeded: only a queued, planning, running or paused backfill can be paused",
    ),
    (
        Control.PAUSE,
        "failed",
        "the backfill is failed: only a queued, planning, running or paused backfill can be paused",
    ),
    (
        Control.RESUME,
        "cancelling",
        "the backfill is cancelling: only a queued, planning, running or paused backfill can be resumed",
    ),
    (
        Control.CANCEL,
        "cancelled",
        "the backfill is cancelled: only a queued, planning, running or paused backfill can be cancelled",
    ),
    (
        Control.CANCEL,
        "planned",
        "the backfill is planned: only a queued, planning, running or paused backfill can be cancelled",
    ),
    (
        Control.RERUN_FAILED,
        "running",
        "the backfill is running: its failed dates can be re-run once it has ended",
    ),
    (Control.RERUN_FAILED, "succeeded", "the backfill is succeeded but no date of it ended failed"),
]


@pytest.mark.parametrize(
    "control, phase, message", MISFITS, ids=[f"{c.value}-{phase}" for c, phase, _ in MISFITS]
)
def test_a_control_that_does_not_fit_the_phase_is_refused_naming_the_phase(
    db, started, control, phase, message
):
    in_phase(db, phase)

    refusal = refused(control, HEAD, ANN, db)

    assert (refusal.status_code, refusal.detail) == (409, {"message": message, "phase": phase})


@pytest.mark.parametrize(
    "control, who, phase",
    [
        (Control.PAUSE, CY, "running"),
        (Control.CANCEL, BO, "running"),
        (Control.CANCEL, EVE, "running"),
        (Control.RESUME, ANN, "running"),
        (Control.CANCEL, ANN, "cancelling"),
        (Control.RERUN_FAILED, EVE, "cancelled"),
        (Control.RERUN_FAILED, ANN, "running"),
    ],
    ids=lambda v: v.value if isinstance(v, Control) else v if isinstance(v, str) else v.get_name(),
)
def test_a_refusal_changes_nothing(db, started, control, who, phase):
    in_phase(db, phase)
    db.continuation(1, "queued")
    db.targets({3: "queued"})
    before = (db.states(CONTROLLER_DAG_ID), db.states(TARGET), history(db))

    refused(control, HEAD, who, db)

    assert (db.states(CONTROLLER_DAG_ID), db.states(TARGET), history(db)) == before
    assert audit_log(db) == [] and started == []


def test_pausing_a_running_backfill_shows_it_paused(db):
    in_phase(db, "running")

    shown = actions.switch(Control.PAUSE, HEAD, ANN, db.session)

    assert (shown["run_id"], shown["phase"], shown["paused"]) == (HEAD, "paused", True)


def test_resuming_a_paused_backfill_shows_it_running_again(db):
    in_phase(db, "paused")

    shown = actions.switch(Control.RESUME, HEAD, ANN, db.session)

    assert (shown["phase"], shown["paused"]) == ("running", False)


def test_each_applied_control_is_kept_in_the_history_and_the_audit_log(db):
    in_phase(db, "running")

    actions.switch(Control.PAUSE, HEAD, ANN, db.session)
    shown = actions.switch(Control.RESUME, HEAD, ANN, db.session)

    assert [(h["action"], h["by"]) for h in shown["history"]] == [("pause", "ann"), ("resume", "ann")]
    assert history(db) == [("pause", "ann", None), ("resume", "ann", None)]
    assert audit_log(db) == [
        (f"backfill_controller.{c}", "ann", TARGET, HEAD, {"backfill": HEAD, "detail": None})
        for c in ("pause", "resume")
    ]


def test_the_trigger_task_of_any_segment_reads_whether_its_backfill_is_paused(db):
    in_phase(db, "running")
    segment = db.continuation(1, "running")

    actions.switch(Control.PAUSE, HEAD, ANN, db.session)

    assert actions.paused_for(segment, db.session)["paused"] is True
    assert actions.paused_for(HEAD, db.session)["paused_seconds"] >= 0
    actions.switch(Control.RESUME, HEAD, ANN, db.session)
    assert actions.paused_for(segment, db.session)["paused"] is False


def test_cancelling_stops_every_segment_and_fails_the_queued_target_runs(db):
    in_phase(db, "running")
    segment = db.continuation(1, "queued")
    db.targets({3: "queued"})

    shown = actions.cancel(HEAD, ANN, db.session)

    assert db.states(CONTROLLER_DAG_ID) == {HEAD: "failed", segment: "failed"}
    assert db.states(TARGET) == {day(1): "success", day(2): "running", day(3): "failed"}
    assert (shown["phase"], shown["history"][-1]["action"], shown["history"][-1]["by"]) == (
        "cancelling",
        "cancel",
        "ann",
    )


@pytest.mark.parametrize("phase", ["queued", "planning", "running", "paused"])
def test_a_live_backfill_can_be_cancelled(db, phase):
    in_phase(db, phase)

    actions.cancel(HEAD, ANN, db.session)

    assert db.states(CONTROLLER_DAG_ID) == {HEAD: "failed"}
    assert history(db)[-1] == ("cancel", "ann", None)


@pytest.mark.parametrize(
    "state, reported",
    [("success", False), ("failed", True), ("failed", False)],
    ids=["succeeded", "failed", "cancelled"],
)
def test_re_running_starts_a_backfill_of_exactly_the_failed_dates_as_the_caller(db, started, state, reported):
    head = db.backfill(state=state, reason="outage", task_regex="^load")
    db.targets({1: "success", 2: "failed", 3: "failed", 4: "success"})
    if reported:
        db.reported(head.id)

    answer = actions.rerun_failed(HEAD, ANN, db.session, request=None)

    assert answer["dag_run_id"] == "manual__rerun"
    ((conf, who),) = started
    assert who is ANN
    assert conf == {
        "dag_id": TARGET,
        "task_regex": "^load",
        "dates": [logical(2), logical(3)],
        "reprocess": "failed",
        "reason": f"re-run of failed dates of {HEAD}",
    }
    assert history(db) == [("rerun_failed", "ann", "manual__rerun")]


def test_re_running_leaves_every_right_beyond_reading_the_target_to_the_front_door(db, started):
    in_phase(db, "cancelled")

    actions.rerun_failed(HEAD, BO, db.session, request=None)

    assert [(conf["dates"], who) for conf, who in started] == [([logical(2)], BO)]


def test_a_backfill_not_recorded_yet_is_operated_on_the_target_its_conf_names(db):
    db.run(CONTROLLER_DAG_ID, HEAD, "queued", conf={"dag_id": TARGET, "dates": ["2024-01-01"]})

    assert refused(Control.PAUSE, HEAD, EVE, db).detail == {"message": "eve may not operate this backfill"}
    shown = actions.switch(Control.PAUSE, HEAD, ANN, db.session)
    assert (shown["phase"], shown["target_dag_id"], history(db)) == (
        "queued",
        TARGET,
        [("pause", "ann", None)],
    )
