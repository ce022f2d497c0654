"""The ledger's per-target hold: two planners of one target check and claim one after the other."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from backfill_controller.db.manager import migrate
from backfill_controller.domain.overlap import Span
from backfill_controller.server import ledger


@pytest.fixture
def engine(tmp_path):
    """A SQLite file in write-ahead-log mode, as the suite's Airflow runs it, migrated as
    ``airflow db migrate`` does."""
    path = tmp_path / "airflow.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.2})
    with engine.begin() as connection:
        migrate(connection)
    return engine


def test_a_second_planner_of_the_target_waits_until_the_first_has_claimed(engine):
    first, second = Session(engine), Session(engine)
    ledger.hold_target(first, "bf_daily")
    with pytest.raises(OperationalError, match="database is locked"):
        ledger.hold_target(second, "bf_daily")
    second.rollback()
    span = Span("bf_daily", "2024-07-01T00:00:00+00:00", "2024-07-04T00:00:00+00:00")
    ledger.record(first, ledger.Entry("manual__a", "bf_daily", "admin", span, ("r1",)))
    first.commit()

    ledger.hold_target(second, "bf_daily")  # now it may, and it sees the first's claim
    assert ledger.entries(second, ["manual__a"])["manual__a"].span == span
    second.commit()


def test_the_hold_changes_no_row(engine):
    with Session(engine) as session:
        ledger.record(session, ledger.Entry("manual__a", "bf_daily", None, None, ()))
        session.commit()
        ledger.hold_target(session, "bf_daily")
        session.commit()
        found = ledger.entry(session, "manual__a")
        assert found == ledger.Entry("manual__a", "bf_daily", None, None, (), backfill_id=found.backfill_id)


def test_the_history_of_a_backfill_is_kept_oldest_first(engine):
    from datetime import UTC, datetime, timedelta

    from backfill_controller.domain.controls import Applied, Control

    t = datetime(2024, 1, 1, tzinfo=UTC)
    with Session(engine) as session:
        ledger.add(session, "manual__a", Applied(Control.PAUSE, "ann", t))
        ledger.add(session, "manual__b", Applied(Control.CANCEL, "bo", t))
        ledger.add(session, "manual__a", Applied(Control.RESUME, "cy", t + timedelta(seconds=5), "note"))
        session.commit()
        found = ledger.histories(session, ["manual__a", "manual__c"])
    assert found == {
        "manual__a": [
            Applied(Control.PAUSE, "ann", t),
            Applied(Control.RESUME, "cy", t + timedelta(seconds=5), "note"),
        ],
        "manual__c": [],
    }
