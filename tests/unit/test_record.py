"""A backfill's record: bound to the controller runs it was made with, the only source of their work."""

from __future__ import annotations

from datetime import UTC, datetime

import pendulum
import pytest
from fastapi import HTTPException
from sqlalchemy import update
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTINUES_KEY, CONTROLLER_DAG_ID, XCom, continuation_run_id
from backfill_controller.domain.plan import Action, DatePlan
from backfill_controller.domain.request import parse_request
from backfill_controller.domain.schedule import ScheduledDate
from backfill_controller.domain.settings import Limits
from backfill_controller.server import controller_runs, ledger, record, ui
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
    facts = ui.plan_facts(session, [run.id], (XCom.SEGMENTS, XCom.REQUEST, XCom.PLANS, XCom.ERROR))[run.id]
    assert facts[XCom.SEGMENTS] == 1 and facts[XCom.REQUEST]["dag_id"] == "sales"
    assert len(facts[XCom.PLANS]) == 3 and XCom.ERROR not in facts


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


# ------------------------------------------------- what the runs' tasks keep in the record


class Named:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


SERVICE, MALLORY = Named("airflow_api_user"), Named("mallory")


@pytest.fixture
def service(monkeypatch):
    monkeypatch.setattr("backfill_controller.server.access.service_account", lambda: SERVICE.name)


def chunk_record(chunk: int = 0, acted: int = 1, **events) -> dict:
    return {"chunk": chunk, "acted": acted, "events": events, "stopped": None}


def test_a_chunk_keeps_what_it_acted_on_and_the_page_counts_those_dates_started(db, service):
    session, rows = db
    run, _ = started(session, rows, days=3)
    controller_runs.keep_chunk(HEAD, 0, chunk_record(acted=2), SERVICE, session)
    assert controller_runs.run_chunks(HEAD, SERVICE, session)["chunks"] == [chunk_record(acted=2)]
    detail = ui.backfills_of(session, [run], {"sales"}, with_cells=True)[0]
    assert [c["state"] for c in detail["cells"]] == ["pending", "pending", "pending"]
    assert detail["progress"]["tally"]["acting"] == 3


@pytest.mark.parametrize(
    "chunk, body, wrong",
    [
        (5, chunk_record(5), "chunk 5 is not one of this run's 1 chunks"),
        (0, chunk_record(1), "not the record of chunk 0"),
        (0, chunk_record(acted=9), "acted is 9; chunk 0 has 3 dates"),
        (0, chunk_record(**{"manual__victim": {"kind": "refused", "message": "x"}}), "not chunk 0's"),
        (0, "not a record", "not the record of chunk 0"),
    ],
    ids=["no such chunk", "another chunk's record", "more dates than the chunk", "another run", "no record"],
)
def test_a_chunk_record_that_does_not_fit_the_work_is_refused_and_changes_nothing(
    db, service, chunk, body, wrong
):
    session, rows = db
    started(session, rows, days=3)
    with pytest.raises(HTTPException) as refused:
        controller_runs.keep_chunk(HEAD, chunk, body, SERVICE, session)
    assert refused.value.status_code == 422 and wrong in refused.value.detail["message"]
    assert controller_runs.run_chunks(HEAD, SERVICE, session)["chunks"] == []


def test_only_the_controllers_account_keeps_chunks_reports_and_refusals(db, service):
    session, rows = db
    started(session, rows, days=3)
    calls = [
        lambda: controller_runs.keep_chunk(HEAD, 0, chunk_record(), MALLORY, session),
        lambda: controller_runs.run_chunks(HEAD, MALLORY, session),
        lambda: controller_runs.keep_report(HEAD, {"report": {}}, MALLORY, session),
        lambda: controller_runs.keep_refusal(HEAD, {"message": "no"}, MALLORY, session),
    ]
    for call in calls:
        with pytest.raises(HTTPException) as refused:
            call()
        assert refused.value.status_code == 403
    assert ledger.bound(session, 1, 0).reported is False


def test_an_ended_run_keeps_no_chunk_and_no_report(db, service):
    session, rows = db
    run, _ = started(session, rows, days=3)
    session.execute(update(run.__table__).where(run.__table__.c.id == run.id).values(state="success"))
    session.expire_all()
    for call in (
        lambda: controller_runs.keep_chunk(HEAD, 0, chunk_record(), SERVICE, session),
        lambda: controller_runs.keep_report(HEAD, {"report": {"success": True}}, SERVICE, session),
    ):
        with pytest.raises(HTTPException) as refused:
            call()
        assert refused.value.status_code == 409
    assert ledger.bound(session, 1, 0).reported is False


def test_a_segments_report_is_served_to_its_head_with_that_segments_dates(db, service):
    session, rows = db
    run, _ = started(session, rows, days=4, segment_size=2)
    later, continues = continuation(session, rows, 1)
    record.bind_continuation(session, later, continues)
    controller_runs.keep_report(later.run_id, {"report": {"success": False}}, SERVICE, session)
    entry, head = record.bound_run_of(session, run)
    assert record.work(session, entry, head, segment=1)["report"] == {"success": False}
    assert record.work(session, entry, head)["report"] is None


def test_a_refused_run_shows_why_and_a_planned_run_takes_no_refusal(db, service):
    session, rows = db
    run, _ = started(session, rows, days=1)
    refused_pk = rows.run(CONTROLLER_DAG_ID, "manual__refused", "failed", triggering_user_name="bob")
    controller_runs.keep_refusal("manual__refused", {"message": "dates: not a date"}, SERVICE, session)
    with pytest.raises(HTTPException) as planned_run:
        controller_runs.keep_refusal(HEAD, {"message": "forged"}, SERVICE, session)
    with pytest.raises(HTTPException) as too_long:
        controller_runs.keep_refusal("manual__refused", {"message": "x" * 5000}, SERVICE, session)
    facts = ui.plan_facts(session, [run.id, refused_pk], (XCom.ERROR, XCom.REQUEST))
    assert facts[refused_pk] == {XCom.ERROR: "dates: not a date"} and XCom.ERROR not in facts[run.id]
    assert (planned_run.value.status_code, too_long.value.status_code) == (409, 422)
