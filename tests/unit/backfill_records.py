"""Backfills written into :func:`tests.unit.metadata_rows.database` as the front door records them,
the controller DAG Airflow marks runs failed with, and an auth manager granting rights per user.

A backfill of :data:`TARGET` is a head controller run with its record (claimed, bound and kept as
:func:`backfill_controller.server.front_door.start_backfill` does), and optionally its continuation
runs and the target runs of its dates. No XCom is written: the record is what the api-server reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pendulum
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from backfill_controller.contract import CONTROLLER_DAG_ID, continuation_run_id
from backfill_controller.domain.plan import Action, DatePlan
from backfill_controller.domain.request import parse_request
from backfill_controller.domain.rights import OPERATE_TARGET, Right
from backfill_controller.domain.schedule import ScheduledDate
from backfill_controller.domain.settings import Limits
from backfill_controller.server import front_door, ledger, record
from backfill_controller.server.planner import Planned
from tests.unit.metadata_rows import DagRun, Rows, database

NOW = datetime(2024, 6, 1, tzinfo=UTC)
HEAD = "manual__head"
TARGET = "sales"


def day(n: int) -> str:
    """The run id the backfill gives its target run of 2024-01-``n``."""
    return f"backfill_controller__2024-01-{n:02d}"


def logical(n: int) -> str:
    return f"2024-01-{n:02d}T00:00:00+00:00"


def conf_of(days: int, **more: Any) -> dict[str, Any]:
    return {"dag_id": TARGET, "start_date": "2024-01-01", "end_date": f"2024-01-{days:02d}", **more}


def planned(conf: Mapping[str, Any], days: int) -> Planned:
    """Every date of ``conf`` triggered (no target run yet when it was planned)."""
    request = parse_request(conf, limits=Limits(), now=pendulum.datetime(2024, 6, 1))
    plans = []
    for n in range(1, days + 1):
        start = pendulum.datetime(2024, 1, n)
        date = ScheduledDate(start, start.add(days=1), start, start.add(days=1))
        plans.append(DatePlan(date, day(n), Action.TRIGGERED))
    return Planned(request, plans, target_max_active_runs=16)


class Backfills(Rows):
    """Backfills of :data:`TARGET` and the target's runs."""

    def backfill(
        self,
        run_id: str = HEAD,
        state: str = "running",
        days: int = 4,
        requester: str = "ann",
        waits: bool = False,
        **conf: Any,
    ) -> Any:
        """A head controller run and its record, as the front door makes them (``waits``: for
        another backfill, so neither claimed nor planned yet); the run."""
        request = conf_of(days, **conf)
        pk = self.run(CONTROLLER_DAG_ID, run_id, state, conf=request, triggering_user_name=requester)
        run = self.session.get(DagRun, pk)
        plan = planned(request, days)
        if not waits:
            front_door.claim(self.session, run_id, requester, plan)
        entry = record.bind_head(self.session, run, TARGET, requester)
        if not waits:
            record.keep(self.session, entry, plan, request)
        return run

    def continuation(self, segment: int, state: str, head: str = HEAD) -> str:
        """Continuation run ``segment`` of backfill ``head``, named with its record's token; its id."""
        entry = ledger.entry(self.session, head)
        assert entry is not None
        run_id = continuation_run_id(head, segment, entry.segment_token)
        self.run(CONTROLLER_DAG_ID, run_id, state, triggering_user_name=entry.requester)
        return run_id

    def targets(self, states: Mapping[int, str], dag_id: str = TARGET) -> None:
        """Runs of ``dag_id``, ``{day: state}``, under the run ids the backfill gives them."""
        for n, state in states.items():
            self.run(dag_id, day(n), state)

    def states(self, dag_id: str) -> dict[str, str]:
        """``{run_id: state}`` of ``dag_id``'s runs, as the database has them now."""
        self.session.expire_all()
        return {
            r.run_id: r.state
            for r in self.session.execute(select(DagRun.run_id, DagRun.state).where(DagRun.dag_id == dag_id))
        }


@cache
def _controller() -> Any:
    from airflow.serialization.serialized_objects import LazyDeserializedDAG

    from backfill_controller.dags import controller_dag

    return LazyDeserializedDAG.from_dag(controller_dag())


def _serialize_controller(session: Session) -> None:
    """The controller DAG as the dag processor stores it: Airflow marks its runs failed with it."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.serialized_dag import SerializedDagModel

    session.add(DagBundleModel(name="dags-folder"))
    session.flush()
    session.add(DagModel(dag_id=CONTROLLER_DAG_ID, bundle_name="dags-folder"))
    session.flush()
    SerializedDagModel.write_dag(_controller(), bundle_name="dags-folder", session=session)
    session.commit()


@cache
def _template() -> tuple[Engine, Any]:
    engine = database()
    with Session(engine) as session:
        _serialize_controller(session)
    return engine, engine.raw_connection()


def controller_database() -> Engine:
    """:func:`tests.unit.metadata_rows.database` with the controller DAG serialized in it (made once,
    then copied: a test gets its own database in a few milliseconds)."""
    copy = sqlite3.connect(":memory:", check_same_thread=False)
    _template()[1].driver_connection.backup(copy)
    return create_engine("sqlite://", creator=lambda: copy, poolclass=StaticPool)


# --------------------------------------------------------------------------------- users and rights

#: ``(method, entity name or None)`` of each right.
READ = {(r.method, r.entity) for r in (Right.READ_DAG, Right.READ_RUNS)}
OPERATE = {(r.method, r.entity) for r in OPERATE_TARGET}
CONTROL = READ | {(r.method, r.entity) for r in (Right.CLEAR_RUNS, Right.CREATE_RUNS)}


def user(name: str) -> SimpleAuthManagerUser:
    return SimpleAuthManagerUser(username=name, role=None)


class AuthManager:
    """Grants each user what ``grants`` lists: ``{name: {dag_id: {(method, entity name or None)}}}``."""

    def __init__(self, grants: Mapping[str, Mapping[str, Iterable[tuple[str, str | None]]]]) -> None:
        self.grants = {
            name: {dag: set(rights) for dag, rights in dags.items()} for name, dags in grants.items()
        }
        self.asked: list[tuple[str, str, str | None, str]] = []
        self.tokens: dict[str, Any] = {}

    def is_authorized_dag(self, *, method: str, access_entity: Any, details: Any, user: Any) -> bool:
        entity = access_entity.name if access_entity else None
        self.asked.append((user.get_name(), method, entity, details.id))
        return (method, entity) in self.grants.get(user.get_name(), {}).get(details.id, set())

    def get_authorized_dag_ids(self, *, user: Any, method: str = "GET", session: Any = None) -> set[str]:
        dags = self.grants.get(user.get_name(), {})
        return {dag_id for dag_id, rights in dags.items() if (method, None) in rights}

    async def get_user_from_token(self, token: str) -> Any:
        return self.tokens[token]
