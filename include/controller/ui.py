"""The **Backfills** page: every controller backfill, running and past, with a per-date status grid.

Served inside the api-server by the plugin's FastAPI app (``include/controller/web.py`` includes
``router``), so it reads the metadata database directly and uses the UI's own authentication
(the ``_token`` cookie the UI login sets, or a bearer token):

* ``GET /backfill-controller/api/backfills`` (JSON): the ``backfill_controller`` runs, newest first,
  a page at a time, each summed up: its request (target, window, reason, who), phase, progress
  counts and, while it runs, its estimated end (``eta``, :mod:`include.backfill.eta`); no dates.
* ``GET /backfill-controller/api/backfills/{run_id}`` (JSON): one backfill, summed up as in the list,
  with one cell per date, every segment's (what the CLI follows).
* ``GET /backfill-controller/ui`` (HTML): a self-contained page (inline CSS and JS, no build step)
  that renders the list as a table and, for a backfill the user opens, its calendar of cells from
  its detail. The plugin registers it in the UI navigation, where Airflow shows it in an iframe.

The list takes two filters, and ``total`` counts what they keep:

* ``dag_id``: the backfills of that target DAG, filtered in SQL on the controller run's conf
  (``conf ->> 'dag_id'`` on PostgreSQL, ``json_extract`` on SQLite), so pages stay exact and cheap.
  The conf's ``dag_id`` is the target as requested: the planned request keeps it unchanged.
* ``state``: the backfills in that **phase** (:class:`include.backfill.state.Phase`, the ``phase``
  each backfill shows), not the controller run state, which says ``success`` for a dry run and
  ``failed`` for a cancelled backfill. A phase is computed, not stored: the database keeps the
  controller runs whose state allows the phase, a few batched queries read what decides it (the
  plan's request, whether it planned, whether the report ran), and only a failed backfill that may
  be cancelling or cancelled is read in full (are runs it started still open?). The page is then
  cut from that list, newest first.

A cell is one date as :mod:`include.backfill.state` says (the report and the CLI read the same):
the facts are read from the database in a few queries per page (the target runs: run_id IN the
plan's run_ids and the adopted ones, batched; the ``trigger`` task instances and their records).
The list counts the dates from the same facts as the detail, so both say the same, but builds no
cells: its answer stays small however many dates its backfills have.

A large backfill runs in segments (``include/backfill/segments.py``): its continuation runs are
not listed on their own but folded into the run that received the request.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.state import DagRunState, TaskInstanceState
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from include.backfill.airflow_states import OPEN_RUN
from include.backfill.controls import Applied, paused
from include.backfill.eta import EtaFacts, RunTimes, estimate, needs_recent
from include.backfill.plan import EXECUTION_KEY, Execution, chunk_size_of
from include.backfill.segments import continuation_run_id
from include.backfill.state import (
    CHUNK_RECORD_KEY,
    IN_FLIGHT_DATES,
    UNFINISHED_DATES,
    ChunkRecord,
    Counts,
    DateOutcome,
    DateState,
    Phase,
    SegmentFacts,
    adopted_run_ids,
    count,
    phase,
    possible_phases,
    run_states_of,
    segment_dates,
)
from include.controller import ledger
from include.controller.progress import TRIGGER_TASK_ID

CONTROLLER_DAG_ID = "backfill_controller"
PLAN_TASK_ID = "plan"

_PLAN_KEYS = ("request", "plans", "run_ids", "error", "segments", EXECUTION_KEY)
#: What the list reads of an ended backfill's plan (:func:`backfills_of`): not its dates.
_ENDED_KEYS = ("request", "error", "segments", EXECUTION_KEY)
_IN_FLIGHT: frozenset[str | None] = frozenset(OPEN_RUN)
#: In every continuation run's run_id and no other (``<head run_id>__segment_<k>``).
_CONTINUATION_MARK = continuation_run_id("", 1).removesuffix("1")
_ENDED = (TaskInstanceState.SUCCESS, TaskInstanceState.FAILED)
_BATCH = 500  # bound parameters per IN (...): far below SQLite's limit
#: Backfills whose dates are read at once: a page holds the plans and target runs of this many
#: backfills at most, however many it lists.
_GROUP = 10
#: The target's latest successful runs whose durations an estimate falls back on.
_RECENT_RUNS = 20
#: Dates whose run the backfill has started: their runs' times are its work so far.
_STARTED = IN_FLIGHT_DATES | {DateState.SUCCESS, DateState.FAILED}

# The controller run must be readable; its target's runs are shown only if that DAG is readable too.
_READ_CONTROLLER_RUNS = Depends(
    requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN, param_dag_id=CONTROLLER_DAG_ID)
)

router = APIRouter(tags=["Backfills page"])


def readable_dag_ids(user: GetUserDep) -> set[str]:
    # Not Airflow's ReadableDagsFilterDep: it reads the auth manager from app.state, which a
    # plugin's sub-application does not have.
    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _utc(iso: str) -> str:
    """An ISO-8601 datetime in UTC, so dates sort as text and group by UTC day in the page."""
    return datetime.fromisoformat(iso).astimezone(UTC).isoformat()


def _state(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


_Key = TypeVar("_Key", str, int)


def _batches(values: Iterable[_Key]) -> Iterator[list[_Key]]:
    wanted = sorted(set(values))
    for start in range(0, len(wanted), _BATCH):
        yield wanted[start : start + _BATCH]


def plan_xcoms(session: Session, run_pks: Sequence[int], keys: Sequence[str]) -> dict[int, dict[str, Any]]:
    """``{dag_run.id: {key: value}}`` of the ``plan`` task's XComs (one query per batch of runs)."""
    found: dict[int, dict[str, Any]] = {}
    if not keys:
        return found
    for batch in _batches(run_pks):
        rows = session.execute(
            select(XComModel.dag_run_id, XComModel.key, XComModel.value).where(
                XComModel.dag_run_id.in_(batch),
                XComModel.task_id == PLAN_TASK_ID,
                XComModel.map_index == -1,
                XComModel.key.in_(keys),
            )
        )
        for row in rows:
            # Stored as JSON, or as a JSON string of it: XComModel.deserialize_value reads both.
            found.setdefault(row.dag_run_id, {})[row.key] = XComModel.deserialize_value(row)
    return found


def _planned(session: Session, run_pks: Sequence[int]) -> set[int]:
    """The controller runs (``dag_run.id``) whose ``plan`` task pushed its plans (not read)."""
    found: set[int] = set()
    for batch in _batches(run_pks):
        found.update(
            session.scalars(
                select(XComModel.dag_run_id).where(
                    XComModel.dag_run_id.in_(batch),
                    XComModel.task_id == PLAN_TASK_ID,
                    XComModel.map_index == -1,
                    XComModel.key == "plans",
                )
            )
        )
    return found


def _chunk_records(session: Session, run_pks: Sequence[int]) -> dict[int, dict[int, ChunkRecord]]:
    """``{dag_run.id: {chunk: record}}`` of the ``trigger`` task instances' records."""
    found: dict[int, dict[int, ChunkRecord]] = {}
    if not run_pks:
        return found
    rows = session.execute(
        select(XComModel.dag_run_id, XComModel.value).where(
            XComModel.dag_run_id.in_(run_pks),
            XComModel.task_id == TRIGGER_TASK_ID,
            XComModel.key == CHUNK_RECORD_KEY,
        )
    )
    for row in rows:
        record = ChunkRecord.from_dict(XComModel.deserialize_value(row))
        if record is not None:
            found.setdefault(row.dag_run_id, {})[record.chunk] = record
    return found


def _trigger_states(session: Session, run_ids: Iterable[str]) -> dict[str, dict[int, str | None]]:
    """``{controller run_id: {map_index: state}}`` of the mapped ``trigger`` task."""
    found: dict[str, dict[int, str | None]] = {}
    for batch in _batches(run_ids):
        rows = session.execute(
            select(TaskInstance.run_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_id == CONTROLLER_DAG_ID,
                TaskInstance.task_id == TRIGGER_TASK_ID,
                TaskInstance.run_id.in_(batch),
            )
        )
        for row in rows:
            found.setdefault(row.run_id, {})[row.map_index] = _state(row.state)
    return found


def _report_ran(session: Session, run_ids: Iterable[str]) -> set[str]:
    """The controller runs whose ``report`` task ran (a run failed without it was cancelled)."""
    ran: set[str] = set()
    for batch in _batches(run_ids):
        ran.update(session.scalars(_report_task(batch, _ENDED)))
    return ran


def _report_state(session: Session, run_id: str) -> str | None:
    """The state of a controller run's ``report`` task once it runs or ran; else None."""
    found = session.scalar(
        _report_task([run_id], (TaskInstanceState.RUNNING, *_ENDED)).with_only_columns(TaskInstance.state)
    )
    return _state(found)


def _report_task(run_ids: Sequence[str], states: Sequence[TaskInstanceState]) -> Select[Any]:
    return select(TaskInstance.run_id).where(
        TaskInstance.dag_id == CONTROLLER_DAG_ID,
        TaskInstance.task_id == "report",
        TaskInstance.run_id.in_(run_ids),
        TaskInstance.state.in_(states),
    )


def _runs(session: Session, dag_id: str, run_ids: Iterable[str], *, times: bool = False) -> dict[str, Any]:
    """``{run_id: (id, run_id, state)}`` of ``dag_id``'s runs among ``run_ids`` (IN (...), batched),
    and their ``start_date`` and ``end_date`` with ``times``."""
    columns = [DagRun.id, DagRun.run_id, DagRun.state]
    if times:
        columns += [DagRun.start_date, DagRun.end_date]
    found: dict[str, Any] = {}
    for batch in _batches(run_ids):
        rows = session.execute(select(*columns).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(batch)))
        found.update({row.run_id: row for row in rows})
    return found


def _part(
    facts: Mapping[str, Any],
    chunk_states: Mapping[int, str | None],
    records: Mapping[int, ChunkRecord],
    finished: bool,
    dry_run: bool,
) -> SegmentFacts:
    """A controller run's facts, the target run states still to fill in."""
    return SegmentFacts(
        plans=facts["plans"],
        run_ids=facts.get("run_ids") or [],
        chunk_size=chunk_size_of(facts.get(EXECUTION_KEY)),
        chunk_states=chunk_states,
        records=records,
        run_states={},
        finished=finished,
        dry_run=dry_run,
    )


def _dates(
    session: Session,
    target: str,
    parts: Sequence[SegmentFacts],
    *,
    times: bool,
    run_states: Mapping[str, str | None] | None = None,
) -> tuple[list[DateOutcome], dict[str, Any]]:
    """Every date of a backfill's parts, in plan order, and the target runs read for them
    (:func:`_runs`, with their ``times``); from ``run_states`` instead when the backfill has ended
    (:mod:`include.controller.ledger`'s outcome). A dry run's dates read no target run."""
    rows: dict[str, Any] = {}
    if run_states is None and not all(part.dry_run for part in parts):
        wanted = [p["run_id"] for part in parts for p in part.plans]
        wanted += [r for part in parts for r in adopted_run_ids(part.records)]
        rows = _runs(session, target, wanted, times=times)
        run_states = {run_id: _state(row.state) for run_id, row in rows.items()}
    states = dict(run_states or {})
    return [d for part in parts for d in segment_dates(replace(part, run_states=states))], rows


def _cells(dates: Sequence[DateOutcome]) -> list[dict]:
    cells = [
        {**date.to_dict(), "logical_date": _utc(date.logical_date), "run_exists": date.run_state is not None}
        for date in dates
    ]
    cells.sort(key=lambda c: c["logical_date"])
    return cells


def _span(dates: Sequence[DateOutcome]) -> tuple[str | None, str | None]:
    """The first and last logical dates (UTC) of dates in plan order (ascending or, for
    ``run_backwards``, descending: :func:`include.backfill.plan.decide`)."""
    if not dates:
        return None, None
    ends = sorted((_utc(dates[0].logical_date), _utc(dates[-1].logical_date)))
    return ends[0], ends[1]


def now() -> datetime:
    """The time estimates are made at (one place, so a test can fix it)."""
    return datetime.now(UTC)


def _running_at_most(execution: Any) -> int:
    """Most runs of the backfill running at once, from its ``execution`` XCom (1: unreadable)."""
    try:
        return Execution.from_dict(execution).feeding.running_at_most
    except (KeyError, TypeError, ValueError):
        return 1


def _recent_durations(session: Session, dag_id: str) -> list[float]:
    """Seconds each of ``dag_id``'s latest successful runs took (at most :data:`_RECENT_RUNS`)."""
    rows = session.execute(
        select(DagRun.start_date, DagRun.end_date)
        .where(
            DagRun.dag_id == dag_id,
            DagRun.state == DagRunState.SUCCESS,
            DagRun.start_date.is_not(None),
            DagRun.end_date.is_not(None),
        )
        .order_by(DagRun.id.desc())
        .limit(_RECENT_RUNS)
    )
    return [(row.end_date - row.start_date).total_seconds() for row in rows]


def _eta(
    session: Session,
    head: DagRun,
    target: str,
    dates: Sequence[DateOutcome],
    rows: Mapping[str, Any],
    execution: Any,
) -> dict[str, Any] | None:
    """A running backfill's estimated end (:mod:`include.backfill.eta`) from its target runs' times;
    the target's recent runs' durations are read only when none of its runs has finished."""
    runs = [
        RunTimes(row.start_date, None if d.state in IN_FLIGHT_DATES else row.end_date)
        for d in dates
        if d.state in _STARTED and (row := rows.get(d.run_id)) is not None
    ]
    unfinished = sum(1 for d in dates if d.state in UNFINISHED_DATES)
    if not unfinished:
        return None
    since = head.start_date
    recent = _recent_durations(session, target) if needs_recent(runs, since) else []
    facts = EtaFacts(runs, unfinished, _running_at_most(execution), now(), since, recent)
    eta = estimate(facts)
    return eta.to_dict() if eta is not None else None


def _as_shown(
    facts: Mapping[str, Any], conf: Mapping[str, Any] | None, readable: set[str]
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """A backfill's request and ``plan`` facts as this reader may see them, and whether the target is
    visible: a reader without read rights on the target sees that a backfill exists, no more."""
    request = dict(facts.get("request") or conf or {})
    target = request.get("dag_id")
    if target in readable:
        return request, dict(facts), True
    hidden = {key: value for key, value in facts.items() if key not in ("error", "plans")}
    return {"dag_id": target}, hidden, False


def _phase_facts(request: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, bool]:
    """What :func:`include.backfill.state.phase` reads from the request and the plan, as shown."""
    return {"planned": "plans" in facts, "dry_run": bool(request.get("dry_run"))}


def _progress(dates: Sequence[DateOutcome], tally: Counts, dry_run: bool) -> dict[str, Any]:
    return {
        "dates": tally.dates,
        "acting": 0 if dry_run else tally.acting,
        "finished": 0 if dry_run else tally.finished,
        "counts": dict(Counter(d.state.value for d in dates)),
        "tally": tally.to_dict(),
    }


def _of_dates(dates: Sequence[DateOutcome], segments: int, dry_run: bool) -> dict[str, Any]:
    """What a summary says of a backfill's dates: its progress, span and segments (what an ended
    backfill's outcome keeps, so the list need not read its dates again)."""
    first, last = _span(dates)
    return {
        "progress": _progress(dates, count(dates), dry_run),
        "first_date": first,
        "last_date": last,
        "segments": segments,
    }


def _summary(
    run: DagRun,
    facts: Mapping[str, Any],
    parts: Sequence[SegmentFacts],
    session: Session,
    readable: set[str],
    reported: bool,
    history: Sequence[Applied] = (),
    with_cells: bool = False,
    ended: ledger.Outcome | None = None,
) -> dict[str, Any]:
    """One backfill as this reader may see it; its per-date ``cells`` only ``with_cells``.

    An ended backfill's dates are as its outcome says: the list reads its summary of them, the
    detail its target runs' states.
    """
    request, facts, visible = _as_shown(facts, run.conf, readable)
    target = request.get("dag_id")
    dry_run = bool(request.get("dry_run"))
    explicit = request.get("dates")
    dates: list[DateOutcome] = []
    rows: dict[str, Any] = {}
    is_paused = paused(history)
    said = {"reported": reported, "paused": is_paused, **_phase_facts(request, facts)}
    of_dates = _of_dates(dates, ended.summary["segments"] if ended else len(parts), dry_run)
    if visible and ended is not None and not with_cells:
        of_dates = ended.summary
    elif visible and parts and isinstance(target, str):
        # The run times feed only the estimate, which only a running backfill has.
        running = Phase.RUNNING in possible_phases(_state(run.state), **said)
        run_states = ended.run_states if ended is not None else None
        dates, rows = _dates(session, target, parts, times=running, run_states=run_states)
        of_dates = _of_dates(dates, len(parts), dry_run)
    progress = of_dates["progress"]
    where = phase(_state(run.state), **said, counts=Counts.from_dict(progress["tally"]))
    summary = {
        "run_id": run.run_id,
        "state": _state(run.state),
        "phase": where.value,
        "queued_at": _iso(run.queued_at),
        "start_date": _iso(run.start_date),
        "end_date": _iso(run.end_date),
        "triggered_by": run.triggering_user_name,
        "target_dag_id": target,
        "window": {
            "start_date": request.get("start_date"),
            "end_date": request.get("end_date"),
            "dates": len(explicit) if isinstance(explicit, list) else None,
            "first_date": of_dates["first_date"],
            "last_date": of_dates["last_date"],
        },
        "reason": request.get("reason") or "",
        "dry_run": dry_run,
        "reprocess": request.get("reprocess"),
        "error": facts.get("error"),
        "planned": "plans" in facts,
        "visible": visible,
        "segments": of_dates["segments"],
        "progress": progress,
        "eta": None,
        "paused": is_paused,
        "history": [applied.to_dict() for applied in history],
    }
    if where == Phase.RUNNING and isinstance(target, str):
        summary["eta"] = _eta(session, run, target, dates, rows, facts.get(EXECUTION_KEY))
    if with_cells:
        summary["cells"] = _cells(dates)
    return summary


def _parts(
    session: Session, heads: Sequence[DagRun], facts: Mapping[int, Mapping[str, Any]]
) -> dict[str, list[SegmentFacts]]:
    """Each head run's parts: its own dates, then one per continuation segment (large backfills).

    A segment whose continuation run has not planned yet is read from the head's ``segment_<k>`` XCom.
    """
    continuations = {
        head.run_id: [
            continuation_run_id(head.run_id, k)
            for k in range(1, int(facts.get(head.id, {}).get("segments") or 1))
        ]
        for head in heads
    }
    later = _runs(session, CONTROLLER_DAG_ID, (r for ids in continuations.values() for r in ids))
    later_facts = plan_xcoms(session, [row.id for row in later.values()], ("plans", "run_ids", EXECUTION_KEY))
    missing = {
        f"segment_{k}"
        for ids in continuations.values()
        for k, run_id in enumerate(ids, start=1)
        if run_id not in later or "plans" not in later_facts.get(later[run_id].id, {})
    }
    head_segments = plan_xcoms(session, [h.id for h in heads], sorted(missing))
    states = _trigger_states(session, [h.run_id for h in heads] + list(later))
    records = _chunk_records(session, [h.id for h in heads] + [row.id for row in later.values()])
    parts: dict[str, list[SegmentFacts]] = {}
    for head in heads:
        own = facts.get(head.id, {})
        if "plans" not in own:
            parts[head.run_id] = []
            continue
        dry_run = bool((own.get("request") or {}).get("dry_run"))
        head_finished = _state(head.state) not in _IN_FLIGHT
        found = [_part(own, states.get(head.run_id, {}), records.get(head.id, {}), head_finished, dry_run)]
        for k, run_id in enumerate(continuations[head.run_id], start=1):
            row = later.get(run_id)
            segment = later_facts.get(row.id, {}) if row is not None else {}
            if row is not None and "plans" in segment:
                finished = _state(row.state) not in _IN_FLIGHT
                found.append(
                    _part(segment, states.get(run_id, {}), records.get(row.id, {}), finished, dry_run)
                )
            else:
                plans = head_segments.get(head.id, {}).get(f"segment_{k}") or []
                found.append(_part({"plans": plans}, {}, {}, head_finished, dry_run))
        parts[head.run_id] = found
    return parts


def _ended(
    session: Session, group: Sequence[DagRun], reported: set[str], *, run_states: bool
) -> dict[str, ledger.Outcome]:
    """The outcomes of these head runs that still hold: the report ran, the run is over, and it
    was not cleared since (``clear_number``)."""
    found = ledger.outcomes(session, [h.run_id for h in group], run_states=run_states)
    return {
        h.run_id: ended
        for h in group
        if (ended := found.get(h.run_id)) is not None
        and ended.clear_number == h.clear_number
        and h.run_id in reported
        and _state(h.state) not in _IN_FLIGHT
    }


def backfills_of(
    session: Session, heads: Sequence[DagRun], readable: set[str], *, with_cells: bool = False
) -> list[dict[str, Any]]:
    """The summaries of these head runs as a reader who may read ``readable`` DAGs sees them, with
    each date's cell ``with_cells``; read :data:`_GROUP` backfills at a time (bounded memory).

    An ended backfill's plan is not read for the list: its outcome sums its dates up.
    """
    found = []
    for start in range(0, len(heads), _GROUP):
        group = heads[start : start + _GROUP]
        reported = _report_ran(session, [h.run_id for h in group])
        ended = _ended(session, group, reported, run_states=with_cells)
        dated = [h for h in group if with_cells or h.run_id not in ended]
        facts = plan_xcoms(session, [h.id for h in dated], _PLAN_KEYS)
        undated = [h.id for h in group if h not in dated]
        facts.update(plan_xcoms(session, undated, _ENDED_KEYS))
        for pk in _planned(session, undated):
            facts.setdefault(pk, {})["plans"] = None  # it planned; its plans are not read
        parts = _parts(session, dated, facts)
        histories = ledger.histories(session, [h.run_id for h in group])
        found += [
            _summary(
                h,
                facts.get(h.id, {}),
                parts.get(h.run_id, []),
                session,
                readable,
                h.run_id in reported,
                histories[h.run_id],
                with_cells,
                ended.get(h.run_id),
            )
            for h in group
        ]
    return found


def settle(session: Session, head: DagRun) -> ledger.Outcome | None:
    """Record how the backfill of ``head`` ended, at its report's moment, when none of its dates
    can change any more: what the page says of its dates, and its target runs' states. A segment
    that never ran counts as over, as the report counts it. None, and nothing recorded, before the
    report runs or while a date is still to start or running."""
    if _report_state(session, head.run_id) is None:
        return None
    facts = plan_xcoms(session, [head.id], _PLAN_KEYS).get(head.id, {})
    request = facts.get("request") or head.conf or {}
    parts = [replace(part, finished=True) for part in _parts(session, [head], {head.id: facts})[head.run_id]]
    target = request.get("dag_id")
    dates: list[DateOutcome] = []
    rows: dict[str, Any] = {}
    if parts and isinstance(target, str):
        dates, rows = _dates(session, target, parts, times=False)
    if any(d.state in UNFINISHED_DATES for d in dates):
        return None
    ended = ledger.Outcome(
        head.clear_number,
        _of_dates(dates, len(parts), bool(request.get("dry_run"))),
        {run_id: _state(row.state) for run_id, row in rows.items()},
    )
    ledger.settle(session, head.run_id, ended)
    return ended


def target_is(dag_id: str) -> ColumnElement[bool]:
    """The controller runs whose conf asks to backfill ``dag_id``: a JSON lookup in SQL, portable
    (``conf ->> 'dag_id'`` on PostgreSQL, ``JSON_EXTRACT(conf, '$."dag_id"')`` on SQLite and MySQL)."""
    return DagRun.conf["dag_id"].as_string() == dag_id


def _run_state_in(states: Iterable[str | None]) -> ColumnElement[bool]:
    wanted = set(states)
    known = DagRun.state.in_(sorted(s for s in wanted if s is not None))
    return or_(known, DagRun.state.is_(None)) if None in wanted else known


def _heads_in_phase(
    session: Session, heads: ColumnElement[bool], wanted: Phase, readable: set[str]
) -> list[int]:
    """The ids of the head runs among ``heads`` whose backfill is in phase ``wanted``, newest first.

    The phase comes from :func:`include.backfill.state.phase`, fed what the reader is shown, as in
    :func:`_summary`; only a backfill that may be cancelling or cancelled is read in full.
    """
    rows = session.execute(
        select(DagRun.id, DagRun.run_id, DagRun.state, DagRun.conf)
        .where(heads, _run_state_in(run_states_of(wanted)))
        .order_by(DagRun.id.desc())
    ).all()
    ids = [row.id for row in rows]
    requests, planned = plan_xcoms(session, ids, ("request",)), _planned(session, ids)
    reported = _report_ran(session, [row.run_id for row in rows])
    histories = ledger.histories(session, [row.run_id for row in rows])
    found: set[int] = set()
    undecided: list[int] = []
    for row in rows:
        facts = {**requests.get(row.id, {}), **({"plans": None} if row.id in planned else {})}
        request, facts, _ = _as_shown(facts, row.conf, readable)
        phases = possible_phases(
            _state(row.state),
            **_phase_facts(request, facts),
            reported=row.run_id in reported,
            paused=paused(histories[row.run_id]),
        )
        if phases == {wanted}:
            found.add(row.id)
        elif wanted in phases:
            undecided.append(row.id)
    for batch in _batches(undecided):
        runs = list(session.scalars(select(DagRun).where(DagRun.id.in_(batch))))
        backfills = backfills_of(session, runs, readable)
        found.update(run.id for run, b in zip(runs, backfills, strict=True) if b["phase"] == wanted)
    return sorted(found, reverse=True)


def _page(
    session: Session,
    heads: ColumnElement[bool],
    wanted: Phase | None,
    readable: set[str],
    limit: int,
    offset: int,
) -> tuple[int, list[DagRun]]:
    """How many head runs ``heads`` and ``wanted`` keep, and one page of them, newest first."""
    newest_first = select(DagRun).order_by(DagRun.id.desc())
    if wanted is None:
        total = session.scalar(select(func.count()).select_from(DagRun).where(heads)) or 0
        return total, list(session.scalars(newest_first.where(heads).limit(limit).offset(offset)))
    ids = _heads_in_phase(session, heads, wanted, readable)
    page = ids[offset : offset + limit]
    return len(ids), list(session.scalars(newest_first.where(DagRun.id.in_(page)))) if page else []


def _with_controls(user: Any, backfills: list[dict[str, Any]], readable: set[str]) -> list[dict[str, Any]]:
    """Each backfill with the ``controls`` the reader may apply to it now (the page's buttons)."""
    from include.controller.actions import controls_for

    return [{**b, "controls": controls_for(user, b, readable) if user is not None else []} for b in backfills]


@router.get("/api/backfills", dependencies=[_READ_CONTROLLER_RUNS])
def list_backfills(
    session: SessionDep,
    user: GetUserDep,
    readable: Annotated[set[str], Depends(readable_dag_ids)],
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    dag_id: Annotated[str | None, Query(min_length=1, max_length=250, description="target DAG")] = None,
    state: Annotated[Phase | None, Query(description="the backfills in this phase")] = None,
) -> dict[str, Any]:
    """Every backfill (``backfill_controller`` run), newest first, summed up without its cells (live
    run states); only those of target ``dag_id`` and in phase ``state`` when given (``total``
    counts those).

    A large backfill's continuation runs are folded into the run that received the request.
    Queries: the page of controller runs, then for each group of :data:`_GROUP` of them their
    ``plan`` XComs, their continuation runs and XComs, the ``trigger`` task states, then per
    backfill its target runs (run_id IN, batched) and, for a running one none of whose runs has
    finished, the target's latest run durations; with ``state``, first what decides the phase of
    every candidate (see the module's docstring).
    """
    heads = (DagRun.dag_id == CONTROLLER_DAG_ID) & ~DagRun.run_id.contains(
        _CONTINUATION_MARK, autoescape=True
    )
    if dag_id is not None:
        heads &= target_is(dag_id)
    total, runs = _page(session, heads, state, readable, limit, offset)
    backfills = _with_controls(user, backfills_of(session, runs, readable), readable)
    return {
        "controller_dag_id": CONTROLLER_DAG_ID,
        "total": total,
        "limit": limit,
        "offset": offset,
        "active": any(b["state"] in _IN_FLIGHT for b in backfills),
        "backfills": backfills,
    }


@router.get("/api/backfills/{run_id}", dependencies=[_READ_CONTROLLER_RUNS])
def get_backfill(
    run_id: str,
    session: SessionDep,
    user: GetUserDep,
    readable: Annotated[set[str], Depends(readable_dag_ids)],
) -> dict[str, Any]:
    """One backfill, as :func:`list_backfills` sums it up, with a cell per date; 404 for a run that
    is not one."""
    head = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id))
    if head is None or _CONTINUATION_MARK in run_id:
        raise HTTPException(404, detail=f"no backfill has the run id {run_id!r}")
    return _with_controls(user, backfills_of(session, [head], readable, with_cells=True), readable)[0]


@router.post("/api/controller_runs/{run_id}/outcome", dependencies=[_READ_CONTROLLER_RUNS])
def record_outcome(run_id: str, session: SessionDep) -> dict[str, Any]:
    """Record how a backfill ended (the ``report`` task's call, once its dates are over): 409 while
    a date is still to start or running."""
    head = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id))
    if head is None or _CONTINUATION_MARK in run_id:
        raise HTTPException(404, detail=f"no backfill has the run id {run_id!r}")
    ended = settle(session, head)
    if ended is None:
        raise HTTPException(409, detail=f"the backfill {run_id!r} still has dates to start or running")
    return {"run_id": run_id, **ended.summary}


@router.get("/ui", response_class=HTMLResponse, dependencies=[_READ_CONTROLLER_RUNS])
def backfills_page() -> HTMLResponse:
    """The Backfills page; it loads ``api/backfills`` (relative to itself) in the browser."""
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})


@router.get("/icon.svg", include_in_schema=False)
def nav_icon(dark: bool = False) -> Response:
    """The navigation icon: a small calendar grid (public, like the UI's own static files)."""
    return Response(ICON.format(color="#d1d9e0" if dark else "#3d444d"), media_type="image/svg+xml")


ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="{color}">'
    + "".join(
        f'<rect x="{2 + 7 * col}" y="{2 + 7 * row}" width="6" height="6" rx="1.5"'
        + (' opacity=".45"' if (row, col) in ((0, 2), (2, 1)) else "")
        + "/>"
        for row in range(3)
        for col in range(3)
    )
    + "</svg>"
)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Backfills</title>
<style>
  :root {
    --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #ffffff; --soft: #f6f8fa;
    --success: #2da44e; --failed: #d1242f; --trigger_failed: #82071e; --running: #1f9bd1;
    --queued: #8c959f; --pending: #eaeef2; --skipped: #e87bb5; --cancelled: #f0883e;
    --planned: #ffffff; --none: #f6f8fa;
  }
  * { box-sizing: border-box; }
  body { margin: 0; padding: 20px 24px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
         Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 20px; margin-bottom: 12px; }
  h1 { font-size: 20px; margin: 0; }
  .muted { color: var(--muted); }
  .legend { display: flex; flex-wrap: wrap; gap: 6px 14px; margin: 0 0 14px; padding: 0; list-style: none;
            font-size: 12px; color: var(--muted); }
  .legend li { display: flex; align-items: center; gap: 5px; }
  table { border-collapse: collapse; width: 100%; }
  th { text-align: left; font-size: 12px; font-weight: 600; color: var(--muted); padding: 6px 8px;
       border-bottom: 1px solid var(--line); white-space: nowrap; }
  td { padding: 8px; vertical-align: top; border-top: 1px solid var(--line); }
  tr.grid-row td { border-top: none; padding-top: 0; padding-bottom: 16px; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
           color: #fff; background: var(--queued); }
  .badge.success { background: var(--success); } .badge.failed { background: var(--failed); }
  .badge.running { background: var(--running); } .badge.queued { background: var(--queued); }
  .tag { display: inline-block; padding: 0 6px; border: 1px solid var(--line); border-radius: 4px;
         font-size: 11px; color: var(--muted); margin-left: 4px; }
  a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
  code { font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
  .bar { width: 140px; height: 8px; border-radius: 4px; background: var(--pending); overflow: hidden;
         display: flex; margin: 3px 0; }
  .bar span { display: block; height: 100%; }
  .calendar { display: inline-flex; max-width: 100%; flex-wrap: wrap; gap: 14px 18px; padding: 10px 12px;
              background: var(--soft); border: 1px solid var(--line); border-radius: 6px; }
  td.window, a.run, .note.time { white-space: nowrap; }
  .month h3 { margin: 0 0 4px; font-size: 12px; font-weight: 600; }
  .days { display: grid; grid-template-columns: repeat(7, 14px); gap: 3px; }
  .days.seq { display: flex; flex-wrap: wrap; max-width: 235px; }  /* 14 squares a row */
  .dow { font-size: 9px; line-height: 12px; color: var(--muted); text-align: center; }
  .cell, .blank, .swatch { width: 14px; height: 14px; border-radius: 3px; display: block; }
  .blank { background: var(--none); outline: 1px solid #eaeef2; outline-offset: -1px; }
  .cell { background: var(--pending); outline: 1px solid rgba(31, 35, 40, .15); outline-offset: -1px; }
  a.cell:hover { outline: 2px solid var(--fg); outline-offset: 0; text-decoration: none; }
  .cell[data-state=success] { background: var(--success); }
  .cell[data-state=failed] { background: var(--failed); }
  .cell[data-state=trigger_failed] { background: var(--trigger_failed); }
  .cell[data-state=running] { background: var(--running); animation: pulse 1.6s ease-in-out infinite; }
  .cell[data-state=queued] { background: var(--queued); }
  .cell[data-state=skipped] { background: var(--skipped); }
  .cell[data-state=cancelled] { background: var(--cancelled); }
  .cell[data-state=planned] { background: var(--planned); outline: 1px dashed var(--muted); }
  .swatch { outline: 1px solid rgba(31, 35, 40, .15); outline-offset: -1px; }
  @keyframes pulse { 50% { opacity: .45; } }
  .note { font-size: 12px; color: var(--muted); margin: 6px 0 0; }
  .error { color: var(--failed); white-space: pre-wrap; font-size: 12px; margin: 4px 0 0; }
  #status { font-size: 12px; }
  nav.pages { margin-top: 12px; display: flex; gap: 12px; font-size: 13px; }
  form.filters { margin: 0 0 12px; }
  button.dates { font: inherit; font-size: 12px; padding: 0 6px; margin-top: 4px; border-radius: 4px;
                 border: 1px solid var(--line); background: var(--soft); color: var(--fg); cursor: pointer; }
  .eta { color: var(--fg); }
  .badge.succeeded, .badge.planned { background: var(--success); }
  .badge.cancelled, .badge.cancelling { background: var(--cancelled); }
  .badge.paused { background: var(--skipped); }
  .controls { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 4px; }
  .controls button { font: inherit; font-size: 12px; padding: 0 6px; border-radius: 4px; cursor: pointer;
                     border: 1px solid var(--line); background: var(--soft); color: var(--fg); }
  .controls button.cancel { color: var(--failed); }
  .history { font-size: 12px; color: var(--muted); margin: 8px 0 0; padding-left: 16px; }
  details.new { margin: 0 0 14px; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
  details.new summary { cursor: pointer; font-weight: 600; }
  form.new, form.filters { display: flex; flex-wrap: wrap; gap: 8px 12px; align-items: end; margin-top: 8px; }
  form label { display: flex; flex-direction: column; font-size: 12px; color: var(--muted); gap: 2px; }
  form input, form select { font: inherit; padding: 4px 6px; border: 1px solid var(--line);
                            border-radius: 4px; background: var(--bg); color: var(--fg); }
  form.new button { font: inherit; padding: 5px 12px; border-radius: 4px; border: 1px solid var(--line);
                    background: var(--soft); color: var(--fg); cursor: pointer; }
  #preview { margin-top: 8px; font-size: 13px; }
</style>
</head>
<body>
<header>
  <h1>Backfills</h1>
  <span class="muted">runs of <code>backfill_controller</code>, newest first; logical dates in UTC</span>
  <span id="status" class="muted">loading&hellip;</span>
  <span id="action-status" role="status"></span>
</header>
<details class="new" id="new">
  <summary>New backfill</summary>
  <form class="new" id="new-form">
    <label>Target DAG <input name="dag_id" required placeholder="dag_id"></label>
    <label>Start date <input name="start_date" placeholder="YYYY-MM-DD"></label>
    <label>End date <input name="end_date" placeholder="YYYY-MM-DD"></label>
    <label>Re-process <select name="reprocess">
      <option value="missing">missing</option><option value="failed">failed</option>
      <option value="all">all</option>
    </select></label>
    <label>Reason <input name="reason" maxlength="1000"></label>
    <button type="submit" name="action" value="preview" id="preview-button">Preview</button>
    <button type="submit" name="action" value="start" id="start-button">Start</button>
  </form>
  <div id="preview"></div>
</details>
<form class="filters" id="filters">
  <label>Target DAG <input name="dag_id" id="filter-dag" placeholder="any" maxlength="250"></label>
  <label>Phase <select name="state" id="filter-state"><option value="">any</option></select></label>
  <button type="submit" hidden>Filter</button>
</form>
<ul class="legend" id="legend"></ul>
<div id="content"></div>
<nav class="pages" id="pages"></nav>
<script>
"use strict";
const STATES = [
  ["success", "success"], ["failed", "failed"], ["running", "running"], ["queued", "queued"],
  ["pending", "not started yet"], ["skipped", "skipped"], ["cancelled", "cancelled"],
  ["trigger_failed", "trigger failed"], ["planned", "planned (dry run)"],
];
const PHASES = __PHASES__;
const HEADINGS = ["Backfill", "Target", "Window", "Who", "Reason", "Progress", "Time"];
const PAGE_SIZE = 50;
const REFRESH_MS = 5000;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const IN_FLIGHT = new Set(["queued", "running"]);
let offset = 0;
let timer = null;
const filters = { dag_id: "", state: "" };
// Backfills the user opened: their calendars are drawn from their detail (api/backfills/{run_id}),
// fetched when opened and again on each refresh while their controller run is in flight.
const opened = new Set();
const details = new Map();
let grids = new Map();
let shown = null;  // the list as last rendered

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// The Airflow UI lives one level above this page (<base>/backfill-controller/ui).
function uiUrl(path) { return new URL("../" + path, window.location.href).href; }
function runUrl(dagId, runId) {
  return uiUrl("dags/" + encodeURIComponent(dagId) + "/runs/" + encodeURIComponent(runId));
}

// Inside the Airflow UI this page is a sandboxed iframe that may not navigate the top window, but
// it is same-origin: move the UI's router to the run page instead (a history entry + popstate).
function openInUi(event) {
  const link = event.currentTarget;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  try {
    const top = window.top;
    if (top === window || top.location.origin !== window.location.origin) return;
    event.preventDefault();
    const url = new URL(link.href);
    top.history.pushState(null, "", url.pathname + url.search + url.hash);
    top.dispatchEvent(new top.PopStateEvent("popstate", { state: null }));
  } catch (err) {
    // not allowed to touch the parent: fall back to the plain link (target=_top)
  }
}

function link(href, attrs, ...children) {
  const node = el("a", Object.assign({ href: href, target: "_top" }, attrs || {}), ...children);
  node.addEventListener("click", openInUi);
  return node;
}

function day(iso) { return iso.slice(0, 10); }
function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : ""; }

function duration(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  return Math.floor(whole / 3600) + ":" + pad(Math.floor(whole / 60) % 60) + ":" + pad(whole % 60);
}

function windowText(b) {
  const w = b.window || {};
  const first = w.first_date ? day(w.first_date) : null;
  const last = w.last_date ? day(w.last_date) : null;
  if (w.dates) {
    const span = first ? " (" + first + (first !== last ? " \u2026 " + last : "") + ")" : "";
    return w.dates + " explicit date" + (w.dates === 1 ? "" : "s") + span;
  }
  if (w.start_date || w.end_date) {
    return day(w.start_date || "?") + " \u2192 " + day(w.end_date || "?");
  }
  return "";
}

function progress(b) {
  const p = b.progress || { counts: {} };
  const c = p.counts || {};
  const cell = el("td");
  if (!b.visible || !b.planned) {
    const why = b.error ? "refused" : !b.planned ? "planning\u2026" : "no access to the target";
    cell.append(el("span", { class: "muted", text: why }));
    return cell;
  }
  const bar = el("div", { class: "bar", title: JSON.stringify(c) });
  for (const [state] of STATES) {
    if (!c[state]) continue;
    const width = (100 * c[state]) / p.dates;
    bar.append(el("span", { style: "width:" + width + "%;background:var(--" + state + ")" }));
  }
  const parts = [];
  if (b.dry_run) parts.push(p.dates + " dates planned");
  else parts.push(p.finished + "/" + p.acting + " done");
  for (const [state, label] of STATES) {
    if (c[state] && state !== "planned") parts.push(c[state] + " " + label);
  }
  cell.append(bar, el("div", { class: "note", text: parts.join(" \u00b7 ") }));
  return cell;
}

function square(b, c) {
  const time = c.logical_date.slice(11, 19) !== "00:00:00" ? " " + c.logical_date.slice(11, 16) : "";
  const title = day(c.logical_date) + time + " \u00b7 " + c.state + " \u00b7 " + c.action
    + (c.why ? " (" + c.why + ")" : "") + "\\n" + c.run_id;
  const attrs = { class: "cell", "data-logical-date": c.logical_date, "data-state": c.state,
                  "data-run-id": c.run_id, title: title, "aria-label": title };
  return c.run_exists ? link(runUrl(b.target_dag_id, c.run_id), attrs) : el("span", attrs);
}

// One block per month: a Monday-first calendar when each date is on its own day (daily and
// coarser schedules), otherwise the month's dates in order (several runs a day).
function calendar(b) {
  const months = new Map();
  for (const c of b.cells) {
    const key = c.logical_date.slice(0, 7);
    if (!months.has(key)) months.set(key, []);
    months.get(key).push(c);
  }
  const root = el("div", { class: "calendar", "data-run-id": b.run_id });
  for (const [key, cells] of months) {
    const [year, month] = key.split("-").map(Number);
    const byDay = new Map(cells.map((c) => [Number(c.logical_date.slice(8, 10)), c]));
    const block = el("div", { class: "month" }, el("h3", { text: MONTHS[month - 1] + " " + year }));
    if (byDay.size === cells.length) {
      const grid = el("div", { class: "days" });
      for (const d of ["M", "T", "W", "T", "F", "S", "S"]) grid.append(el("span", { class: "dow", text: d }));
      const first = (new Date(Date.UTC(year, month - 1, 1)).getUTCDay() + 6) % 7;
      const length = new Date(Date.UTC(year, month, 0)).getUTCDate();
      for (let i = 0; i < first; i++) grid.append(el("span"));
      for (let d = 1; d <= length; d++) {
        const c = byDay.get(d);
        const date = key + "-" + String(d).padStart(2, "0");
        grid.append(c ? square(b, c) : el("span", { class: "blank", title: date }));
      }
      block.append(grid);
    } else {
      block.append(el("div", { class: "days seq" }, cells.map((c) => square(b, c))));
    }
    root.append(block);
  }
  return root;
}

function etaNote(b) {
  const eta = b.eta;
  if (!eta || !eta.end) return null;
  const basis = eta.basis === "recent_runs"
    ? "estimated from the target's recent runs (none of this backfill's has finished yet)"
    : "estimated from this backfill's finished runs and its pace so far";
  return el("div", { class: "eta", title: basis,
                     text: "ETA " + when(eta.end) + " (" + duration(eta.remaining_seconds) + " left)" });
}

function hasDates(b) { return Boolean(b.visible && b.planned && b.progress && b.progress.dates); }

function toggle(b) {
  if (!hasDates(b)) return null;
  const open = opened.has(b.run_id);
  const button = el("button", { type: "button", class: "dates", "aria-expanded": String(open),
                                text: (open ? "\u25be" : "\u25b8") + " dates" });
  button.addEventListener("click", () => {
    if (opened.delete(b.run_id)) details.delete(b.run_id);
    else opened.add(b.run_id);
    if (shown) render(shown);
  });
  return button;
}

const CONTROLS = { pause: "Pause", resume: "Resume", cancel: "Cancel", rerun_failed: "Re-run failed" };

// The controls the signed-in user may apply now (the server says which: b.controls).
function controls(b) {
  const shownControls = (b.controls || []).filter((c) => c in CONTROLS);
  if (!shownControls.length) return null;
  return el("div", { class: "controls" }, shownControls.map((c) => {
    const button = el("button", { type: "button", class: c, "data-control": c, text: CONTROLS[c] });
    button.addEventListener("click", () => applyControl(b, c, button));
    return button;
  }));
}

// A control is a JSON POST (a page of another site cannot send one with the UI's cookie).
async function applyControl(b, control, button) {
  if (control === "cancel" && !window.confirm("Cancel backfill " + b.run_id + "? Nothing new starts, "
      + "its queued runs are marked failed; runs already running finish.")) return;
  button.disabled = true;
  let message;
  try {
    const resp = await fetch("api/backfills/" + encodeURIComponent(b.run_id) + "/" + control, {
      method: "POST", credentials: "same-origin", body: "{}",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const detail = body.detail || {};
      message = CONTROLS[control] + " refused (HTTP " + resp.status + "): " + (detail.message || detail);
    } else if (control === "rerun_failed") {
      message = "started " + body.dag_run_id + ": a backfill of the " + body.dates + " failed dates";
    } else {
      message = "backfill " + b.run_id + ": " + body.phase;
    }
  } catch (err) {
    message = CONTROLS[control] + " failed: " + err.message;
  }
  document.getElementById("action-status").textContent = message;
  details.delete(b.run_id);
  load();
}

function history(detail) {
  if (!detail.history || !detail.history.length) return null;
  const line = (h) => when(h.at) + " \u00b7 " + h.action + " by " + (h.by || "?")
    + (h.detail ? " \u2192 " + h.detail : "");
  return el("ul", { class: "history" }, detail.history.map((h) => el("li", { text: line(h) })));
}

function row(data, b) {
  const controller = link(runUrl(data.controller_dag_id, b.run_id), { class: "run" },
    el("code", { text: b.run_id }));
  const target = b.target_dag_id
    ? link(uiUrl("dags/" + encodeURIComponent(b.target_dag_id)), { class: "target" }, b.target_dag_id)
    : "?";
  const attrs = { class: "backfill", "data-run-id": b.run_id, "data-state": b.state, "data-phase": b.phase };
  return el("tr", attrs,
    el("td", {},
      el("span", { class: "badge " + b.phase, text: b.phase, title: "controller run: " + b.state }),
      b.dry_run ? el("span", { class: "tag", text: "dry run" }) : null,
      b.paused && b.phase !== "paused" ? el("span", { class: "tag", text: "paused" }) : null,
      el("div", { class: "note" }, controller), toggle(b), controls(b)),
    el("td", {}, target,
      b.reprocess ? el("div", { class: "note", text: "reprocess: " + b.reprocess }) : null),
    el("td", { class: "window", text: windowText(b) }),
    el("td", { text: b.triggered_by || "" }),
    el("td", {}, b.reason ? el("span", { text: b.reason }) : el("span", { class: "muted", text: "\u2014" }),
      b.error ? el("div", { class: "error", text: b.error }) : null),
    progress(b),
    el("td", { class: "note time" }, el("div", { text: "start " + when(b.start_date || b.queued_at) }),
      b.end_date ? el("div", { text: "end " + when(b.end_date) }) : null, etaNote(b)),
  );
}

// The calendar of an opened backfill: the last detail drawn at once, then a fresh one if needed.
async function openDetail(b) {
  const known = details.get(b.run_id);
  if (known && !IN_FLIGHT.has(b.state) && known.state === b.state) return;
  let detail;
  try {
    const resp = await fetch("api/backfills/" + encodeURIComponent(b.run_id),
      { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    detail = await resp.json();
  } catch (err) {
    const cell = grids.get(b.run_id);
    const why = "could not load its dates: " + err.message;
    if (cell) cell.replaceChildren(el("span", { class: "error", text: why }));
    return;
  }
  details.set(b.run_id, detail);
  const cell = grids.get(b.run_id);
  if (cell && opened.has(b.run_id)) cell.replaceChildren(calendar(detail), history(detail) || "");
}

function render(data) {
  shown = data;
  const rows = [];
  grids = new Map();
  for (const b of data.backfills) {
    rows.push(row(data, b));
    if (!opened.has(b.run_id) || !hasDates(b)) continue;
    const known = details.get(b.run_id);
    const cell = el("td", { colspan: "7" },
      known ? [calendar(known), history(known)]
        : el("span", { class: "muted", text: "loading its dates\u2026" }));
    grids.set(b.run_id, cell);
    rows.push(el("tr", { class: "grid-row", "data-run-id": b.run_id }, cell));
    openDetail(b);
  }
  const table = el("table", {},
    el("thead", {}, el("tr", {}, HEADINGS.map((h) => el("th", { text: h })))),
    el("tbody", {}, rows));
  const content = document.getElementById("content");
  const filtered = filters.dag_id || filters.state;
  const empty = el("p", { class: "muted", text: filtered
    ? "No backfill matches these filters." : "No backfills yet: trigger backfill_controller." });
  content.replaceChildren(data.backfills.length ? table : empty);
  const pages = document.getElementById("pages");
  pages.replaceChildren();
  if (offset > 0) pages.append(el("a", { href: "#", id: "newer", text: "\u2190 newer" }));
  if (offset + data.backfills.length < data.total) {
    pages.append(el("a", { href: "#", id: "older", text: "older \u2192" }));
  }
  for (const a of pages.querySelectorAll("a")) {
    a.addEventListener("click", (e) => {
      e.preventDefault();
      offset = Math.max(0, offset + (a.id === "older" ? PAGE_SIZE : -PAGE_SIZE));
      load();
    });
  }
  const last = offset + data.backfills.length;
  const range = data.backfills.length ? " \u00b7 " + (offset + 1) + "\u2013" + last : "";
  document.getElementById("status").textContent = data.total + " backfill" + (data.total === 1 ? "" : "s")
    + (filtered ? " matching" : "") + range + " \u00b7 updated " + new Date().toLocaleTimeString()
    + (data.active ? " \u00b7 refreshing every 5 s" : "");
  document.body.dataset.loaded = "true";
}

async function load() {
  clearTimeout(timer);
  let active = false;
  try {
    const query = new URLSearchParams({ limit: PAGE_SIZE, offset: offset });
    for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
    const resp = await fetch("api/backfills?" + query,
      { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (resp.status === 401 || resp.status === 403) {
      throw new Error("not signed in, or no read access to backfill_controller (HTTP " + resp.status + ")");
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    const data = await resp.json();
    render(data);
    active = data.active;
  } catch (err) {
    document.getElementById("status").textContent = "could not load backfills: " + err.message;
    active = true;  // try again
  }
  if (active) timer = setTimeout(load, REFRESH_MS);
}

// The front door checks the request for the signed-in user: a preview is its dry run (nothing is
// created), Start creates the backfill. Refusals list every problem, or the missing right.
async function submitNew(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const data = new FormData(form);
  const conf = {};
  for (const key of ["dag_id", "start_date", "end_date", "reprocess", "reason"]) {
    const value = (data.get(key) || "").trim();
    if (value) conf[key] = value;
  }
  const preview = event.submitter && event.submitter.value === "preview";
  const out = document.getElementById("preview");
  out.replaceChildren(el("span", { class: "muted", text: preview ? "checking…" : "starting…" }));
  const resp = await fetch(preview ? "api/backfills/dry_run" : "api/backfills", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(conf),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const detail = body.detail || {};
    const errors = (detail.errors || [])
      .map((e) => e.field + ": " + e.problem + " (accepted: " + e.accepted + ")");
    const why = errors.length ? errors.join("\\n") : detail.message || resp.statusText;
    out.replaceChildren(el("div", { class: "error", id: "refusal",
      text: "refused (HTTP " + resp.status + "): " + why }));
    return;
  }
  if (preview) {
    const b = { run_id: "preview", target_dag_id: body.dag_id, cells: body.dates.map((d) => ({
      logical_date: d.logical_date, state: d.action === "skipped" ? "skipped" : "planned", action: d.action,
      why: d.why, run_id: d.run_id, run_exists: false })) };
    const counts = Object.entries(body.counts).filter(([, v]) => v).map(([k, v]) => v + " " + k).join(" · ");
    out.replaceChildren(el("div", { class: "note", id: "preview-counts", text: counts }), calendar(b));
  } else {
    out.replaceChildren(el("div", { class: "note", id: "started", text: "started " + body.dag_run_id }));
    offset = 0;
    load();
  }
}

function applyFilters(event) {
  if (event) event.preventDefault();
  filters.dag_id = document.getElementById("filter-dag").value.trim();
  filters.state = document.getElementById("filter-state").value;
  offset = 0;
  load();
}

document.getElementById("new-form").addEventListener("submit", submitNew);
document.getElementById("filter-state").append(...PHASES.map((p) => el("option", { value: p, text: p })));
document.getElementById("filters").addEventListener("submit", applyFilters);
document.getElementById("filter-dag").addEventListener("change", applyFilters);
document.getElementById("filter-state").addEventListener("change", applyFilters);
document.getElementById("legend").append(...STATES.map(([state, label]) =>
  el("li", {}, el("span", { class: "swatch", style: "background:var(--" + state + ")" }), label)));
load();
</script>
</body>
</html>
"""
#: The phase filter offers every phase the API knows.
PAGE = PAGE.replace("__PHASES__", json.dumps([p.value for p in Phase]))
