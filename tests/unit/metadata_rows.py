"""Rows of Airflow's metadata database written by hand, for the Backfills page's route functions.

An in-memory SQLite with every Airflow table and the plugin's own, made by its migrations as
``airflow db migrate`` makes them (:func:`database`), and :class:`Rows` to write DAG runs,
backfills' records (what the page reads), and the controller's XComs and task instances (which
it must not read) into it. No Airflow service runs.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

from airflow.models import import_all_models
from sqlalchemy import Table, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTROLLER_DAG_ID, Task
from backfill_controller.db.manager import migrate
from backfill_controller.server import ledger

import_all_models()

from airflow.models.base import Base  # noqa: E402  (after every model is imported)
from airflow.models.dagrun import DagRun  # noqa: E402
from airflow.models.taskinstance import TaskInstance  # noqa: E402
from airflow.models.xcom import XComModel  # noqa: E402

#: Airflow 3.3 keeps XComs in one table (``XComModel``); from 3.4 ``XComModel`` is a read-only view
#: over two stores, and new XComs go to ``xcom_v2``, keyed by their task instance's id: :meth:`Rows.xcom`
#: writes whichever this Airflow has.
XCOM_TABLE = isinstance(XComModel.__table__, Table)
#: The task instance table's map index column: ``region_index`` from Airflow 3.4.
MAP_INDEX = "map_index" if "map_index" in TaskInstance.__table__.c else "region_index"


def database() -> Engine:
    """An in-memory SQLite with Airflow's tables and the plugin's (through its migrations)."""
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        migrate(connection)
    return engine


class Rows:
    """DAG runs, the controller's XComs and task instances, written at ``now``."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.ids = itertools.count(1)

    def run(self, dag_id: str, run_id: str, state: str, **values: Any) -> int:
        """A manual DAG run (``values``: more columns, e.g. ``conf``, ``start_date``); its id."""
        pk = next(self.ids)
        self.session.execute(
            DagRun.__table__.insert().values(
                id=pk,
                dag_id=dag_id,
                run_id=run_id,
                run_type="manual",
                state=state,
                clear_number=0,
                run_after=self.now,
                logical_date=None,
                data_interval_end=None,
                **values,
            )
        )
        return pk

    def record(
        self,
        pk: int,
        run_id: str,
        request: dict[str, Any],
        plans: list[dict[str, Any]],
        execution: dict[str, Any] | None = None,
        *,
        segments: list[list[dict[str, Any]]] | None = None,
    ) -> ledger.BoundRun:
        """The record of a backfill planned by the controller run ``pk`` (``run_id``, its head):
        ``request`` as normalized, segment 0's ``plans`` (then ``segments``' plans, if given), and
        how the head feeds the target; the head bound to it."""
        run_ids = [p["run_id"] for p in plans if p["action"] in ("triggered", "cleared")]
        ledger.record(self.session, ledger.Entry(run_id, request["dag_id"], "ann", None, tuple(run_ids)))
        entry = ledger.entry(self.session, run_id)
        assert entry is not None and entry.backfill_id is not None
        ledger.bind(self.session, entry.backfill_id, 0, _Run(pk, run_id))
        ledger.keep_plan(self.session, entry.backfill_id, request, [plans, *(segments or [])])
        if execution is not None:
            ledger.set_execution(self.session, entry.backfill_id, 0, execution)
        bound = ledger.bound(self.session, entry.backfill_id, 0)
        assert bound is not None
        return bound

    def chunk(self, pk: int, chunk: int, acted: int, stopped: str | None = None) -> None:
        """What chunk ``chunk`` of the bound controller run ``pk`` has acted on, as its task keeps it."""
        bound = ledger.bound_by_pk(self.session, pk)
        assert bound is not None
        record = {"chunk": chunk, "acted": acted, "events": {}, "stopped": stopped}
        ledger.keep_chunk(self.session, bound, chunk, record)

    def reported(self, pk: int, report: dict[str, Any] | None = None) -> None:
        """The ``report`` task of the bound controller run ``pk`` began (keeping ``report``)."""
        bound = ledger.bound_by_pk(self.session, pk)
        assert bound is not None
        ledger.keep_report(self.session, bound, report)

    def xcom(self, pk: int, run_id: str, key: str, value: Any, task_id: str = Task.PLAN, map_index: int = -1):
        """An XCom of the controller run ``pk`` (``run_id``), of its ``plan`` task by default."""
        if not XCOM_TABLE:  # Airflow 3.4: the store of new XComs, by task instance
            from airflow.models.xcom import XComModelV2  # type: ignore[attr-defined]

            self.session.execute(
                XComModelV2.__table__.insert().values(
                    id=uuid.uuid4(),
                    task_instance_id=self._task_instance(run_id, task_id, map_index),
                    key=key,
                    value=value,
                    timestamp=self.now,
                )
            )
            return
        self.session.execute(
            XComModel.__table__.insert().values(
                dag_run_id=pk,
                task_id=task_id,
                map_index=map_index,
                key=key,
                dag_id=CONTROLLER_DAG_ID,
                run_id=run_id,
                value=value,
                timestamp=self.now,
            )
        )

    def _task_instance(self, run_id: str, task_id: str, map_index: int) -> uuid.UUID:
        """The id of that task instance of the controller run ``run_id`` (written, with no state,
        where there is none yet)."""
        table = TaskInstance.__table__
        found = self.session.scalar(
            select(table.c.id).where(
                table.c.dag_id == CONTROLLER_DAG_ID,
                table.c.run_id == run_id,
                table.c.task_id == task_id,
                table.c[MAP_INDEX] == map_index,
            )
        )
        if found is not None:
            return found
        self.task(run_id, task_id, None, map_index)
        return self._task_instance(run_id, task_id, map_index)

    def task(self, run_id: str, task_id: str, state: str | None, map_index: int = -1) -> None:
        """A task instance of the controller run ``run_id`` (its state set, where it exists)."""
        table = TaskInstance.__table__
        match = (
            (table.c.dag_id == CONTROLLER_DAG_ID)
            & (table.c.run_id == run_id)
            & (table.c.task_id == task_id)
            & (table.c[MAP_INDEX] == map_index)
        )
        if self.session.scalar(select(table.c.id).where(match)) is not None:
            self.session.execute(TaskInstance.__table__.update().where(match).values(state=state))
            return
        self.session.execute(
            TaskInstance.__table__.insert().values(
                id=uuid.uuid4(),
                task_id=task_id,
                dag_id=CONTROLLER_DAG_ID,
                run_id=run_id,
                state=state,
                pool="default_pool",
                pool_slots=1,
                try_number=1,
                max_tries=0,
                priority_weight=1,
                **{MAP_INDEX: map_index},
            )
        )


class _Run:
    """What :func:`backfill_controller.server.ledger.bind` reads of a ``DagRun``."""

    def __init__(self, pk: int, run_id: str) -> None:
        self.id, self.run_id, self.clear_number = pk, run_id, 0
