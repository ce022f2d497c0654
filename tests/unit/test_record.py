"""A backfill's record: bound to the controller runs it was made with, the only source of their work."""

from __future__ import annotations

from datetime import UTC, datetime

import pendulum
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTINUES_KEY, CONTROLLER_DAG_ID, XCom, continuation_run_id
from backfill_controller.domain.plan import Action, DatePlan
from backfill_controller.domain.request import parse_request
from backfill_controller.domain.schedule import ScheduledDate
from backfill_controller.domain.settings import Limits
from backfill_controller.server import ledger, record, ui
from backfill_controller.server.planner import Planned
from tests.unit.metadata_rows import Rows, database

NOW = datetime(2024, 6, 1, tzinfo=UTC)
HEAD = "manual__head"


def planned(days: int = 5, **conf) -> Planned:
    request = parse_request(
        {"dag_id": "sales", "start_date": "2024-01-01", "end_date": f"2024-01-{days:02d}", **conf},
        limits=Limits(),
        now=pendulum.datetime(2024, 6, 1),
    )
    plans = []
    for day in range(1, days + 1):
        logical = pendulum.datetime(2024, 1, day)
        date = ScheduledDate(logical, logical.add(days=1), logical, logical.add(days=1))
        plans.append(DatePlan(date, f"backfill_controller__2024-01-{day:02d}", Action.TRIGGERED))
    return Planned(request, plans, target_max_active_runs=16)


@pytest.fixture
def db():
    engine = database()
    with Session(engine) as session:
        yield session, Rows(session, NOW)


def dag_run(session: Session, pk: int):
    from airflow.models.dagrun import DagRun

    return session.get(DagRun, pk)


def started(session: Session, rows: Rows, days: int = 5, **conf):
    """A head run planned as the front door plans it: bound, claimed, kept."""
    pk = rows.run(CONTROLLER_DAG_ID, HEAD, "running", triggering_user_name="ann")
    run = dag_run(session, pk)
    plan = planned(days, **conf)
    entry = record.bind_head(session, run, "sales", "ann")
    record.keep(session, ledger.entry(session, HEAD), plan, conf)
    return run, entry


def test_the_work_of_a_head_run_is_its_first_segment_as_recorded(db):
    session, rows = db
    run, _ = started(session, rows, days=5, segment_size=2)
    entry, mine = record.bound_run_of(session, run)
    work = record.work(session, entry, mine)
    assert (work["segment"], work["segments"], work["head_run_id"], work["requester"]) == (0, 3, HEAD, "ann")
    assert [p["logical_date"][:10] for p in work["plans"]] == ["2024-01-01", "2024-01-02"]
    assert work["run_ids"] == ["backfill_controller__2024-01-01", "backfill_controller__2024-01-02"]
    assert work["execution"]["target_dag_id"] == "sales" and work["execution"]["total"] == 2
    assert work["request"]["dag_id"] == "sales"
    token = ledger.entry(session, HEAD).segment_token
    assert len(token) == 8 and work["continuation_run_ids"] == [
        continuation_run_id(HEAD, 1, token),
        continuation_run_id(HEAD, 2, token),
    ]


def test_a_cleared_controller_run_gets_no_work(db):
    session, rows = db
    run, _ = started(session, rows)
    session.execute(update(type(run)).where(type(run).id == run.id).values(clear_number=1))
    session.expire_all()
    with pytest.raises(record.NotBound, match="was cleared after its backfill was made") as refused:
        record.bound_run_of(session, dag_run(session, run.id))
    assert "rerun_failed" in str(refused.value)


def test_a_run_re_created_under_an_old_run_id_is_not_the_records(db):
    session, rows = db
    run, _ = started(session, rows)
    session.delete(run)
    session.flush()
    again = dag_run(session, rows.run(CONTROLLER_DAG_ID, HEAD, "running", triggering_user_name="ann"))
    with pytest.raises(record.NotBound, match="was created after the backfill recorded under that run_id"):
        record.bind_head(session, again, "other_dag", "mallory")
    assert ledger.bound_by_pk(session, again.id) is None


def continuation(
    session: Session, rows: Rows, segment: int, run_type: str = "operator_triggered", token: str | None = None
):
    """A continuation run of segment ``segment``, named with the record's token unless ``token``."""
    if token is None:
        token = ledger.entry(session, HEAD).segment_token
    run_id = continuation_run_id(HEAD, segment, token)
    conf = {CONTINUES_KEY: {"head_run_id": HEAD, "segment": segment, "failed_before": 1}}
    pk = rows.run(CONTROLLER_DAG_ID, run_id, "running", conf=conf, triggering_user_name="ann")
    session.execute(
        update(type(dag_run(session, pk)))
        .values(run_type=run_type)
        .where(type(dag_run(session, pk)).id == pk)
    )
    session.expire_all()
    return dag_run(session, pk), conf[CONTINUES_KEY]


def test_a_continuation_gets_its_segment_of_its_heads_record(db):
    session, rows = db
    started(session, rows, days=5, segment_size=2)
    run, continues = continuation(session, rows, 2)
    entry, mine = record.bind_continuation(session, run, continues)
    work = record.work(session, entry, mine)
    assert (work["segment"], work["head_run_id"]) == (2, HEAD)
    assert [p["logical_date"][:10] for p in work["plans"]] == ["2024-01-05"]
    assert work["execution"]["failed_before"] == 1 and work["execution"]["total"] == 1
    assert work["continuation_run_ids"] == []  # only the head starts continuations
    assert record.bind_continuation(session, run, continues)[1] == mine  # asking again: the same


@pytest.mark.parametrize(
    "segment, run_type, token",
    [(1, "manual", None), (3, "operator_triggered", None), (1, "operator_triggered", "")],
    ids=["a user's run", "no such segment", "the run id without the record's token"],
)
def test_a_forged_continuation_gets_no_work(db, segment, run_type, token):
    session, rows = db
    started(session, rows, days=5, segment_size=2)
    run, continues = continuation(session, rows, segment, run_type, token)
    with pytest.raises(record.NotBound, match="controller's own key"):
        record.bind_continuation(session, run, continues)


def test_a_segment_is_bound_to_one_run_only(db):
    session, rows = db
    started(session, rows, days=5, segment_size=2)
    first, continues = continuation(session, rows, 1)
    record.bind_continuation(session, first, continues)
    session.delete(first)
    session.flush()
    second, continues = continuation(session, rows, 1)
    with pytest.raises(record.NotBound, match="created after"):
        record.bind_continuation(session, second, continues)


def test_the_page_reads_the_record_not_rewritten_xcoms(db):
    session, rows = db
    run, _ = started(session, rows, days=3)
    rows.xcom(run.id, HEAD, XCom.SEGMENTS, 100_000_000)
    rows.xcom(run.id, HEAD, XCom.REQUEST, {"dag_id": "secret_dag"})
    rows.xcom(run.id, HEAD, XCom.ERROR, "refused")
    facts = ui.plan_xcoms(session, [run.id], (XCom.SEGMENTS, XCom.REQUEST, XCom.PLANS, XCom.ERROR))[run.id]
    assert facts[XCom.SEGMENTS] == 1 and facts[XCom.REQUEST]["dag_id"] == "sales"
    assert len(facts[XCom.PLANS]) == 3 and facts[XCom.ERROR] == "refused"


def test_a_kept_plan_is_served_to_every_ask_unchanged(db):
    session, rows = db
    run, _ = started(session, rows, days=3)
    entry, mine = record.bound_run_of(session, run)
    assert record.work(session, entry, mine) == record.work(session, *record.bound_run_of(session, run))
    assert ledger.entry(session, HEAD).segments == 1


def test_an_unbound_run_has_no_work(db):
    session, rows = db
    run = dag_run(session, rows.run(CONTROLLER_DAG_ID, "manual__x", "running"))
    with pytest.raises(record.NotBound, match="belongs to no planned backfill"):
        record.bound_run_of(session, run)
