"""The ledger: what each backfill was authorized to do, kept where no user can rewrite it.

One row per backfill (its head controller run), written by the api-server when the backfill is
planned and authorized (:mod:`backfill_controller.server.web`), in the plugin's own table of the
metadata database, ``backfill_controller_ledger``. Users reach the metadata database only
through Airflow's API, which has no endpoint for this table; XComs, by contrast, can be written
through the REST API by anyone who may write the controller's XComs (FAB: ``can_create`` or
``can_edit`` on ``XComs``). So whatever must be trusted is read from
here: who asked, for which target, and which target runs the backfill acts on (every segment's);
cancelling fails exactly those (:mod:`backfill_controller.server.cancel`), and overlapping
backfills are found from the spans recorded here. A second table, ``backfill_controller_history``,
keeps what users did to each backfill (pause, resume, cancel, re-run failed;
:mod:`backfill_controller.server.actions`). A third, ``backfill_controller_outcome``, keeps how
each backfill ended (:mod:`backfill_controller.server.ui`): its counts, and its target runs'
states when its report ran. What a backfill's runs did is kept beside its record by their tasks,
through the api-server: each chunk's account (``backfill_controller_chunk``), each run's report
(``backfill_controller_run``), and why a run got no work (``backfill_controller_refusal``).

The tables are declared in :mod:`backfill_controller.db.tables` and made by ``airflow db migrate``
(the plugin's own migrations, :mod:`backfill_controller.db.manager`); nothing here creates a table.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from backfill_controller.db.tables import chunks, dates, history, ledger, outcome, refusals, runs
from backfill_controller.domain.controls import Applied, Control
from backfill_controller.domain.overlap import Span
from backfill_controller.domain.plan import ACTING


def hold_target(session: Session, target_dag_id: str) -> None:
    """Serialize, until the caller's transaction ends, every check-and-claim of one target's dates.

    PostgreSQL: a transaction-scoped advisory lock per target. SQLite: the write lock, taken now
    with an update of no row. Python's sqlite3 starts a transaction only at the first write, so
    without it two requests would both read the ledger before either wrote its claim.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        key = zlib.crc32(f"backfill_controller:{target_dag_id}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect == "sqlite":
        session.execute(ledger.update().where(ledger.c.id.is_(None)).values(id=ledger.c.id))


@dataclass(frozen=True)
class Entry:
    """One backfill as authorized: its head run, target, requester, span and acting run ids; once
    planned, its id, normalized request and number of segments."""

    controller_run_id: str
    target_dag_id: str
    requester: str | None
    span: Span | None
    run_ids: tuple[str, ...]
    backfill_id: int | None = None
    request: dict[str, Any] | None = None
    segments: int | None = None
    segment_token: str = ""


def record(session: Session, entry: Entry) -> None:
    """Record (or, for a re-planned backfill, replace) a backfill's entry; the caller commits."""
    values: dict[str, Any] = {
        "target_dag_id": entry.target_dag_id,
        "requester": entry.requester,
        "span_first": entry.span.first if entry.span else None,
        "span_last": entry.span.last if entry.span else None,
        "run_ids": json.dumps(list(entry.run_ids)),
        "recorded_at": datetime.now(UTC),
    }
    found = session.execute(
        select(ledger.c.id).where(ledger.c.controller_run_id == entry.controller_run_id)
    ).scalar()
    if found is None:
        session.execute(ledger.insert().values(controller_run_id=entry.controller_run_id, **values))
    else:
        session.execute(ledger.update().where(ledger.c.id == found).values(**values))


#: A record's columns as every reader reads them: not ``run_ids``, whose size grows with the
#: backfill's dates (its target runs are read from its dates instead: :func:`target_run_ids`).
_ENTRY = [c for c in ledger.c if c.name != "run_ids"]


def entry(session: Session, controller_run_id: str) -> Entry | None:
    row = session.execute(select(*_ENTRY).where(ledger.c.controller_run_id == controller_run_id)).first()
    return _entry(row) if row is not None else None


def entries(session: Session, controller_run_ids: Sequence[str]) -> dict[str, Entry]:
    """The entries of these head runs that have one."""
    if not controller_run_ids:
        return {}
    rows = session.execute(select(*_ENTRY).where(ledger.c.controller_run_id.in_(list(controller_run_ids))))
    return {row.controller_run_id: _entry(row) for row in rows}


#: The actions of the dates a backfill acts on: their target runs are the ones it creates or clears.
_ACTING = sorted(action.value for action in ACTING)


def target_run_ids(session: Session, entry: Entry) -> list[str]:
    """The target runs the backfill ``entry`` acts on (its acting dates', every segment's, in run
    order); for a backfill recorded before its dates were kept, the run ids recorded with it."""
    if entry.backfill_id is not None:
        found = session.scalars(
            select(dates.c.target_run_id)
            .where(dates.c.backfill_id == entry.backfill_id, dates.c.action.in_(_ACTING))
            .order_by(dates.c.position)
        ).all()
        if found or entry.request is not None:
            return [str(run_id) for run_id in found]
    kept = session.scalar(
        select(ledger.c.run_ids).where(ledger.c.controller_run_id == entry.controller_run_id)
    )
    return [str(run_id) for run_id in json.loads(kept or "[]")]


def _entry(row: Any) -> Entry:
    span = Span(row.target_dag_id, row.span_first, row.span_last) if row.span_first else None
    return Entry(
        row.controller_run_id,
        row.target_dag_id,
        row.requester,
        span,
        (),
        row.id,
        json.loads(row.request) if row.request else None,
        row.segments,
        row.segment_token or "",
    )


# ------------------------------------------------------------------- the record: runs and dates


@dataclass(frozen=True)
class BoundRun:
    """A controller run as the backfill ``backfill_id`` was made with it: segment ``segment`` (0:
    the head), ``DagRun.id`` ``dag_run_pk`` and the run's ``clear_number`` then."""

    backfill_id: int
    segment: int
    dag_run_pk: int
    run_id: str
    clear_number: int
    execution: dict[str, Any] | None
    row_id: int = 0
    """Its row in ``backfill_controller_run`` (what its chunks are kept under)."""
    report: dict[str, Any] | None = None
    """Its part of the result, once its ``report`` task kept it."""
    reported: bool = False
    """Whether its ``report`` task began."""


def bind(session: Session, backfill_id: int, segment: int, run: Any) -> None:
    """Bind the controller run ``run`` (a ``DagRun``, flushed) to segment ``segment`` of the backfill."""
    session.execute(
        runs.insert().values(
            backfill_id=backfill_id,
            segment=segment,
            dag_run_pk=run.id,
            run_id=run.run_id,
            clear_number=run.clear_number or 0,
            recorded_at=datetime.now(UTC),
        )
    )


def bound(session: Session, backfill_id: int, segment: int) -> BoundRun | None:
    """The run segment ``segment`` of the backfill was made with, if it has one yet."""
    row = session.execute(
        select(runs).where(runs.c.backfill_id == backfill_id, runs.c.segment == segment)
    ).first()
    return _bound(row) if row is not None else None


def bound_by_pk(session: Session, dag_run_pk: int) -> BoundRun | None:
    """The bound run of the controller run whose ``DagRun.id`` is ``dag_run_pk``, if any."""
    row = session.execute(select(runs).where(runs.c.dag_run_pk == dag_run_pk)).first()
    return _bound(row) if row is not None else None


def bound_runs(session: Session, dag_run_pks: Sequence[int]) -> dict[int, tuple[Entry, BoundRun]]:
    """``{DagRun.id: (record, bound run)}`` of these controller runs that are bound to a record."""
    found: dict[int, tuple[Entry, BoundRun]] = {}
    wanted = sorted(set(dag_run_pks))
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(runs, ledger.c.controller_run_id.label("head_run_id"))
            .join(ledger, ledger.c.id == runs.c.backfill_id)
            .where(runs.c.dag_run_pk.in_(wanted[start : start + 500]))
        ).all()
        entries = {e.backfill_id: e for e in _entries_by_id(session, {row.backfill_id for row in rows})}
        for row in rows:
            found[row.dag_run_pk] = (entries[row.backfill_id], _bound(row))
    return found


def _entries_by_id(session: Session, backfill_ids: set[int]) -> list[Entry]:
    if not backfill_ids:
        return []
    return [
        _entry(row) for row in session.execute(select(*_ENTRY).where(ledger.c.id.in_(sorted(backfill_ids))))
    ]


def entry_by_id(session: Session, backfill_id: int) -> Entry | None:
    row = session.execute(select(*_ENTRY).where(ledger.c.id == backfill_id)).first()
    return _entry(row) if row is not None else None


def _bound(row: Any) -> BoundRun:
    execution = json.loads(row.execution) if row.execution else None
    report = json.loads(row.report) if row.report else None
    return BoundRun(
        row.backfill_id,
        row.segment,
        row.dag_run_pk,
        row.run_id,
        row.clear_number,
        execution,
        row.id,
        report,
        row.reported_at is not None,
    )


def keep_chunk(session: Session, mine: BoundRun, chunk: int, record: dict[str, Any]) -> None:
    """Keep (replace) what chunk ``chunk`` of the bound run ``mine`` has acted on."""
    values = {"record": json.dumps(record), "recorded_at": datetime.now(UTC)}
    found = session.scalar(select(chunks.c.id).where(chunks.c.run_id == mine.row_id, chunks.c.chunk == chunk))
    if found is None:
        session.execute(chunks.insert().values(run_id=mine.row_id, chunk=chunk, **values))
    else:
        session.execute(chunks.update().where(chunks.c.id == found).values(**values))


def chunk_records(session: Session, row_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """``{bound run row: [chunk record, ...]}`` of these bound runs (rows of ``backfill_controller_run``)."""
    found: dict[int, list[dict[str, Any]]] = {}
    wanted = sorted(set(row_ids))
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(chunks.c.run_id, chunks.c.record)
            .where(chunks.c.run_id.in_(wanted[start : start + 500]))
            .order_by(chunks.c.run_id, chunks.c.chunk)
        )
        for row in rows:
            found.setdefault(row.run_id, []).append(json.loads(row.record))
    return found


def keep_report(session: Session, mine: BoundRun, report: dict[str, Any] | None) -> None:
    """Note that the ``report`` task of the bound run ``mine`` began, keeping its report if given."""
    values: dict[str, Any] = {"reported_at": datetime.now(UTC)}
    if report is not None:
        values["report"] = json.dumps(report)
    session.execute(runs.update().where(runs.c.id == mine.row_id).values(**values))


def refuse(session: Session, run: Any, message: str) -> None:
    """Keep why the controller run ``run`` (a ``DagRun``) got no work (the last reason given)."""
    values = {"run_id": run.run_id, "message": message, "recorded_at": datetime.now(UTC)}
    found = session.scalar(select(refusals.c.id).where(refusals.c.dag_run_pk == run.id))
    if found is None:
        session.execute(refusals.insert().values(dag_run_pk=run.id, **values))
    else:
        session.execute(refusals.update().where(refusals.c.id == found).values(**values))


def refusals_of(session: Session, dag_run_pks: Sequence[int]) -> dict[int, str]:
    """``{DagRun.id: why}`` of these controller runs that were refused."""
    found: dict[int, str] = {}
    wanted = sorted(set(dag_run_pks))
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(refusals.c.dag_run_pk, refusals.c.message).where(
                refusals.c.dag_run_pk.in_(wanted[start : start + 500])
            )
        )
        found.update({row.dag_run_pk: row.message for row in rows})
    return found


def set_execution(session: Session, backfill_id: int, segment: int, execution: dict[str, Any]) -> None:
    """How segment ``segment``'s run feeds the target (set when that run is planned)."""
    session.execute(
        runs.update()
        .where(runs.c.backfill_id == backfill_id, runs.c.segment == segment)
        .values(execution=json.dumps(execution))
    )


def keep_plan(
    session: Session, backfill_id: int, request: dict[str, Any], segments: Sequence[Sequence[dict[str, Any]]]
) -> None:
    """Keep the backfill's normalized request and every date's plan, segment by segment, once.

    A plan once kept never changes: a task that asks again gets the same dates.
    """
    session.execute(
        ledger.update()
        .where(ledger.c.id == backfill_id)
        .values(
            request=json.dumps(request),
            segments=len(segments),
            authorized_at=datetime.now(UTC),
            segment_token=secrets.token_hex(4),
        )
    )
    rows = [
        {
            "backfill_id": backfill_id,
            "position": position,
            "segment": segment,
            "logical_date": plan["logical_date"],
            "action": plan["action"],
            "target_run_id": plan.get("run_id"),
            "plan": json.dumps(plan),
        }
        for position, (segment, plan) in enumerate(
            (segment, plan) for segment, part in enumerate(segments) for plan in part
        )
    ]
    for start in range(0, len(rows), 1000):
        session.execute(dates.insert(), rows[start : start + 1000])


def date_count(session: Session, backfill_id: int) -> int:
    """How many dates the backfill has, in all its segments."""
    return int(
        session.scalar(select(func.count()).select_from(dates).where(dates.c.backfill_id == backfill_id)) or 0
    )


def segment_plans(session: Session, backfill_id: int, segment: int) -> list[dict[str, Any]]:
    """The plans of segment ``segment``'s dates, in run order."""
    found = session.scalars(
        select(dates.c.plan)
        .where(dates.c.backfill_id == backfill_id, dates.c.segment == segment)
        .order_by(dates.c.position)
    )
    return [json.loads(plan) for plan in found]


def acting_run_ids(session: Session, backfill_id: int, segment: int, first: int, size: int) -> list[str]:
    """The target run ids of segment ``segment``'s acting dates, in run order, from the
    ``first``-th of them (0-based), at most ``size``."""
    found = session.scalars(
        select(dates.c.target_run_id)
        .where(dates.c.backfill_id == backfill_id, dates.c.segment == segment, dates.c.action.in_(_ACTING))
        .order_by(dates.c.position)
        .offset(first)
        .limit(size)
    )
    return [str(run_id) for run_id in found]


def add(session: Session, controller_run_id: str, applied: Applied) -> None:
    """Add one applied control to the history of the backfill ``controller_run_id`` (its head run)."""
    session.execute(
        history.insert().values(
            controller_run_id=controller_run_id,
            action=applied.control.value,
            actor=applied.by,
            at=applied.at,
            detail=applied.detail,
        )
    )


def histories(session: Session, controller_run_ids: Sequence[str]) -> dict[str, list[Applied]]:
    """The history of each of these backfills (head run ids), oldest first; empty when none."""
    found: dict[str, list[Applied]] = {run_id: [] for run_id in controller_run_ids}
    if not found:
        return found
    rows = session.execute(
        select(history).where(history.c.controller_run_id.in_(list(found))).order_by(history.c.id)
    )
    for row in rows:
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)  # SQLite keeps no zone
        found[row.controller_run_id].append(Applied(Control(row.action), row.actor, at, row.detail))
    return found


@dataclass(frozen=True)
class Outcome:
    """How a backfill ended: what the page says of its dates, and (when read) its target runs'
    states then; valid while the head run's ``clear_number`` is ``clear_number``."""

    clear_number: int
    summary: dict[str, Any]
    run_states: dict[str, str | None] | None = None


def settle(session: Session, controller_run_id: str, ended: Outcome) -> None:
    """Record (or replace) how the backfill ``controller_run_id`` (its head run) ended."""
    values: dict[str, Any] = {
        "clear_number": ended.clear_number,
        "summary": json.dumps(ended.summary),
        "run_states": json.dumps(ended.run_states or {}),
        "recorded_at": datetime.now(UTC),
    }
    found = session.execute(
        select(outcome.c.id).where(outcome.c.controller_run_id == controller_run_id)
    ).scalar()
    if found is None:
        session.execute(outcome.insert().values(controller_run_id=controller_run_id, **values))
    else:
        session.execute(outcome.update().where(outcome.c.id == found).values(**values))


def outcomes(
    session: Session, controller_run_ids: Sequence[str], *, run_states: bool = False
) -> dict[str, Outcome]:
    """How these backfills (head run ids) ended, for those that did; their target runs' states
    only with ``run_states`` (the list reads the summary alone)."""
    if not controller_run_ids:
        return {}
    columns = [outcome.c.controller_run_id, outcome.c.clear_number, outcome.c.summary]
    if run_states:
        columns.append(outcome.c.run_states)
    rows = session.execute(select(*columns).where(outcome.c.controller_run_id.in_(list(controller_run_ids))))
    return {
        row.controller_run_id: Outcome(
            row.clear_number, json.loads(row.summary), json.loads(row.run_states) if run_states else None
        )
        for row in rows
    }
