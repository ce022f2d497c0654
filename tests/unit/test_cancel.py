"""Cancelling a backfill by marking one of its controller runs failed.

Its other open controller runs are marked failed; its queued target runs, exactly those its record
in the ledger holds, are marked failed only if the acting user may edit the target's runs (PUT on
its DAG runs). A backfill whose report began, a run of no backfill, and a run failing with no user
acting change nothing; the acting user is the caller of a PATCH of DAG runs, during it only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.airflow_internals import LOCK_RUNS_READ
from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.server import cancel
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
    user,
)
from tests.unit.metadata_rows import DagRun

ANN, BO = user("ann"), user("bo")


@pytest.fixture
def manager(monkeypatch) -> AuthManager:
    """Ann may operate backfills of the target; Bo may mark controller runs failed and read it only."""
    fake = AuthManager(
        {
            "ann": {CONTROLLER_DAG_ID: CONTROL, TARGET: OPERATE},
            "bo": {CONTROLLER_DAG_ID: CONTROL, TARGET: READ},
        }
    )
    monkeypatch.setattr("airflow.api_fastapi.app.get_auth_manager", lambda: fake)
    return fake


@pytest.fixture
def db(manager) -> Iterator[Backfills]:
    with Session(controller_database()) as session:
        yield Backfills(session, NOW)


@pytest.fixture
def acting():
    """Sets the user whose request is marking a run failed."""
    tokens = []

    def act(who: Any) -> None:
        tokens.append(cancel.ACTING_USER.set(who))

    yield act
    for token in reversed(tokens):
        cancel.ACTING_USER.reset(token)


def run_named(db: Backfills, run_id: str = HEAD) -> DagRun:
    return db.session.scalar(select(DagRun).where(DagRun.run_id == run_id))


def test_the_backfills_other_open_controller_runs_are_marked_failed(db):
    db.backfill(state="failed", days=6, segment_size=2)
    done, running = db.continuation(1, "success"), db.continuation(2, "running")
    db.run(CONTROLLER_DAG_ID, "manual__other", "running")

    cancel.cancel(db.session, HEAD, ANN)

    assert db.states(CONTROLLER_DAG_ID) == {
        HEAD: "failed",
        done: "success",
        running: "failed",
        "manual__other": "running",
    }


def test_a_continuation_marked_failed_stops_its_head_and_the_other_segments(db):
    db.backfill(state="running", days=6, segment_size=2)
    marked, queued = db.continuation(1, "failed"), db.continuation(2, "queued")

    cancel.cancel(db.session, marked, ANN)

    assert db.states(CONTROLLER_DAG_ID) == {HEAD: "failed", marked: "failed", queued: "failed"}


def test_a_user_with_put_on_the_target_fails_its_queued_runs_and_lets_running_ones_finish(db):
    db.backfill(state="failed")
    db.targets({1: "success", 2: "running", 3: "queued", 4: "queued"})

    failed = cancel.cancel(db.session, HEAD, ANN)

    assert failed == 2
    assert db.states(TARGET) == {day(1): "success", day(2): "running", day(3): "failed", day(4): "failed"}


def test_only_the_target_runs_the_ledger_holds_are_failed(db):
    db.backfill(state="failed", days=2)
    db.targets({1: "queued", 3: "queued"})
    db.run(TARGET, "manual__someone_else", "queued")
    db.targets({1: "queued"}, dag_id="other_dag")

    cancel.cancel(db.session, HEAD, ANN)

    assert db.states(TARGET) == {day(1): "failed", day(3): "queued", "manual__someone_else": "queued"}
    assert db.states("other_dag") == {day(1): "queued"}


def test_a_run_re_created_under_a_backfills_old_run_id_cancels_nothing_of_it(db):
    old = db.backfill(state="running", days=2)
    db.targets({1: "queued", 2: "queued"})
    db.session.delete(old)
    db.session.flush()
    db.run(CONTROLLER_DAG_ID, HEAD, "failed", triggering_user_name="mallory")

    assert cancel.cancel(db.session, HEAD, ANN) == 0
    assert db.states(TARGET) == {day(1): "queued", day(2): "queued"}


def test_a_run_merely_named_like_a_continuation_cancels_nothing(db):
    db.backfill(state="running", days=4, segment_size=2)
    db.targets({1: "queued"})
    db.run(CONTROLLER_DAG_ID, f"{HEAD}__segment_1", "failed", triggering_user_name="mallory")

    assert cancel.cancel(db.session, f"{HEAD}__segment_1", ANN) == 0
    assert db.states(TARGET) == {day(1): "queued"} and db.states(CONTROLLER_DAG_ID)[HEAD] == "running"


def test_every_queued_target_run_of_a_large_backfill_is_failed(db, monkeypatch):
    monkeypatch.setattr(cancel, "_BATCH", 3)
    db.backfill(state="failed", days=8)
    db.targets(dict.fromkeys(range(1, 9), "queued"))

    assert cancel.cancel(db.session, HEAD, ANN) == 8
    assert set(db.states(TARGET).values()) == {"failed"}


def test_a_user_without_put_on_the_target_stops_the_controller_and_nothing_else(db):
    db.backfill(state="failed", days=4, segment_size=2)
    segment = db.continuation(1, "running")
    db.targets({1: "queued", 2: "queued"})

    failed = cancel.cancel(db.session, HEAD, BO)

    assert failed == 0
    assert db.states(CONTROLLER_DAG_ID) == {HEAD: "failed", segment: "failed"}
    assert db.states(TARGET) == {day(1): "queued", day(2): "queued"}


def test_the_right_asked_is_put_on_the_targets_dag_runs_of_the_acting_user(db, manager):
    db.backfill(state="failed")

    cancel.cancel(db.session, HEAD, ANN)

    assert manager.asked == [("ann", "PUT", "RUN", TARGET)]


@pytest.mark.parametrize("reported", [True, False], ids=["report began", "no report yet"])
def test_a_backfill_whose_report_began_fails_nothing(db, reported):
    head = db.backfill(state="failed", days=4, segment_size=2)
    segment = db.continuation(1, "running")
    db.targets({1: "queued"})
    if reported:
        db.reported(head.id)

    failed = cancel.cancel(db.session, HEAD, ANN)

    assert failed == (0 if reported else 1)
    assert db.states(CONTROLLER_DAG_ID)[segment] == ("running" if reported else "failed")
    assert db.states(TARGET) == {day(1): "queued" if reported else "failed"}


def test_a_controller_run_of_no_backfill_cancels_nothing(db, manager):
    db.run(CONTROLLER_DAG_ID, "manual__bare", "failed")
    db.run(CONTROLLER_DAG_ID, "manual__bare__segment_1", "running")
    db.targets({1: "queued"})

    assert cancel.cancel(db.session, "manual__bare", ANN) == 0
    assert db.states(CONTROLLER_DAG_ID) == {"manual__bare": "failed", "manual__bare__segment_1": "running"}
    assert db.states(TARGET) == {day(1): "queued"} and manager.asked == []


def test_a_user_marking_a_controller_run_failed_cancels_its_backfill(db, acting):
    db.backfill(state="failed", days=4, segment_size=2)
    segment = db.continuation(1, "running")
    db.targets({1: "queued"})
    acting(ANN)

    cancel.on_dag_run_failed(dag_run=run_named(db), msg="marked failed")

    assert db.states(CONTROLLER_DAG_ID)[segment] == "failed"
    assert db.states(TARGET) == {day(1): "failed"}


def test_a_controller_run_failing_by_itself_changes_nothing(db, manager):
    db.backfill(state="failed", days=4, segment_size=2)
    segment = db.continuation(1, "running")
    db.targets({1: "queued"})

    cancel.on_dag_run_failed(dag_run=run_named(db), msg="task failure")

    assert db.states(CONTROLLER_DAG_ID)[segment] == "running"
    assert db.states(TARGET) == {day(1): "queued"} and manager.asked == []


def test_a_run_of_another_dag_marked_failed_changes_nothing(db, acting, manager):
    db.backfill(state="running")
    db.targets({1: "failed", 2: "queued"})
    acting(ANN)

    cancel.on_dag_run_failed(dag_run=run_named(db, day(1)), msg="marked failed")

    assert db.states(CONTROLLER_DAG_ID) == {HEAD: "running"}
    assert db.states(TARGET) == {day(1): "failed", day(2): "queued"} and manager.asked == []


def test_a_cancel_that_fails_never_breaks_the_state_change_it_reports(db, acting, monkeypatch, caplog):
    db.backfill(state="failed")

    def down(*args: Any) -> list:
        raise RuntimeError("auth manager down")

    monkeypatch.setattr("backfill_controller.server.access.missing_rights", down)
    acting(ANN)

    with caplog.at_level(logging.ERROR, logger=cancel.__name__):
        cancel.on_dag_run_failed(dag_run=run_named(db), msg="marked failed")

    assert f"could not cancel the backfill of controller run {HEAD}" in caplog.text


def scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


RUN_PATH = f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{HEAD}"
RUNS_PATH = f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns"


@pytest.mark.parametrize(
    "method, path, headers, caller, locks",
    [
        ("PATCH", RUN_PATH, {"authorization": "Bearer ann-token"}, "ann", True),
        ("PATCH", RUN_PATH, {"cookie": "_token=ann-token"}, "ann", True),
        ("PATCH", RUNS_PATH, {"authorization": "Bearer ann-token"}, "ann", True),
        ("PATCH", "/api/v2/dags/other/dagRuns/r1", {"authorization": "Bearer ann-token"}, "ann", False),
        ("PATCH", RUN_PATH, {"authorization": "Bearer forged"}, None, True),
        ("PATCH", RUN_PATH, {}, None, True),
        ("GET", RUN_PATH, {"authorization": "Bearer ann-token"}, None, False),
        ("PATCH", f"/api/v2/dags/{CONTROLLER_DAG_ID}", {"authorization": "Bearer ann-token"}, None, False),
    ],
    ids=[
        "bearer token",
        "ui cookie",
        "bulk patch",
        "another dag's run",
        "bad token",
        "no token",
        "a read",
        "a dag's patch",
    ],
)
def test_the_acting_user_is_the_caller_of_a_patch_of_dag_runs_during_it_only(
    manager, method, path, headers, caller, locks
):
    """... and a PATCH of the controller's runs locks each run it reads (before its task instances)."""
    manager.tokens["ann-token"] = ANN
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((cancel.ACTING_USER.get(), LOCK_RUNS_READ.get()))

    async def serve() -> Any:
        await cancel.ActingUserMiddleware(app)(scope(method, path, headers), None, None)
        return cancel.ACTING_USER.get(), LOCK_RUNS_READ.get()

    after = asyncio.run(serve())

    assert [(u.get_name() if u else None, lock) for u, lock in seen] == [(caller, locks)]
    assert after == (None, False)
