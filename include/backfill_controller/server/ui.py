"""The **Backfills** page: every controller backfill, running and past, with a per-date status grid.

Served inside the api-server by the plugin's FastAPI app, so it reads the metadata database
directly and uses the UI's own authentication (the ``_token`` cookie the UI login sets, or a
bearer token). :mod:`backfill_controller.server.web` declares the routes; this module owns what
they answer, and the controls each backfill offers the reader (:func:`controls_for`, which
:mod:`backfill_controller.server.actions` applies):

* ``GET /backfill-controller/api/backfills`` (JSON): the ``backfill_controller`` runs, newest first,
  a page at a time, each summed up: its request (target, window, reason, who), phase, progress
  counts and, while it runs, its estimated end (``eta``, :mod:`backfill_controller.domain.eta`); no dates.
* ``GET /backfill-controller/api/backfills/{run_id}`` (JSON): one backfill, summed up as in the list,
  with one cell per date, every segment's (what the CLI follows).
* ``GET /backfill-controller/api/backfillable_dags`` (JSON): the DAGs the caller may start a
  backfill of, which the page's New backfill form offers.
* ``GET /backfill-controller/ui`` (HTML): a self-contained page that renders the list as a table
  and, for a backfill the user opens, its calendar of cells from its detail. Its files are in
  ``page/`` next to this module (``backfills.html``, ``.css``, ``.js``; no build step), served as
  one document with the CSS and JS inline. The plugin registers it in the UI navigation, where
  Airflow shows it in an iframe.

The list takes two filters, and ``total`` counts what they keep:

* ``dag_id``: the backfills of that target DAG, filtered in SQL on the controller run's conf
  (``conf ->> 'dag_id'`` on PostgreSQL, ``json_extract`` on SQLite), so pages stay exact and cheap.
  The conf's ``dag_id`` is the target as requested: the planned request keeps it unchanged.
* ``state``: the backfills in that **phase** (:class:`backfill_controller.domain.state.Phase`, the ``phase``
  each backfill shows), not the controller run state, which says ``success`` for a dry run and
  ``failed`` for a cancelled backfill. A phase is computed, not stored: the database keeps the
  controller runs whose state allows the phase, a few batched queries read what decides it (the
  plan's request, whether it planned, whether the report ran), and only a failed backfill that may
  be cancelling or cancelled is read in full (are runs it started still open?). The page is then
  cut from that list, newest first.

A cell is one date as :mod:`backfill_controller.domain.state` says (the report and the CLI read the same):
the facts are read from the database in a few queries per page (the target runs: run_id IN the
plan's run_ids and the adopted ones, batched; the ``trigger`` task instances and their records).
The list counts the dates from the same facts as the detail, so both say the same, but builds no
cells: its answer stays small however many dates its backfills have.

A large backfill runs in segments (:mod:`backfill_controller.domain.segments`): its continuation
runs are not listed on their own but folded into the run that received the request.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.models.dag import DagModel
from airflow.models.dagrun import DagRun
from airflow.utils.state import DagRunState
from fastapi import HTTPException
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTROLLER_DAG_ID, SEGMENT_MARK, XCom, continuation_run_id
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.controls import Applied, Control, paused, refusal
from backfill_controller.domain.eta import EtaFacts, RunTimes, estimate, needs_recent
from backfill_controller.domain.keys import form_params
from backfill_controller.domain.plan import ACTING, Execution, chunk_size_of
from backfill_controller.domain.rights import OPERATE_TARGET, Right
from backfill_controller.domain.settings import Limits
from backfill_controller.domain.state import (
    IN_FLIGHT_DATES,
    UNFINISHED_DATES,
    ChunkRecord,
    Counts,
    DateOutcome,
    DateState,
    Phase,
    SegmentFacts,
    acted_on,
    adopted_run_ids,
    count,
    left_alone,
    phase,
    possible_phases,
    records_by_chunk,
    run_states_of,
    segment_dates,
    window_complete,
)
from backfill_controller.server import access, ledger

_PLAN_KEYS = (XCom.REQUEST, XCom.PLANS, XCom.RUN_IDS, XCom.ERROR, XCom.SEGMENTS, XCom.EXECUTION)
#: What the list reads of an ended backfill's plan (:func:`backfills_of`): not its dates.
_ENDED_KEYS = (XCom.REQUEST, XCom.ERROR, XCom.SEGMENTS, XCom.EXECUTION)
_BATCH = 500  # bound parameters per IN (...): far below SQLite's limit
#: Backfills whose dates are read at once: a page holds the plans and target runs of this many
#: backfills at most, however many it lists.
_GROUP = 10
#: Most DAGs the New backfill form offers as its target.
_MOST_TARGETS = 1000
#: The target's latest successful runs whose durations an estimate falls back on.
_RECENT_RUNS = 20
#: Dates whose run the backfill has started: their runs' times are its work so far.
_STARTED = IN_FLIGHT_DATES | {DateState.SUCCESS, DateState.FAILED}


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


#: ``{dag_run.id: (record, bound run)}`` of the controller runs bound to a record (:func:`ledger.bound_runs`).
Recorded = Mapping[int, tuple[ledger.Entry, ledger.BoundRun]]


def plan_facts(
    session: Session, run_pks: Sequence[int], keys: Sequence[str], recorded: Recorded | None = None
) -> dict[int, dict[str, Any]]:
    """``{dag_run.id: {key: value}}`` of what each controller run planned, from its backfill's
    record (:mod:`backfill_controller.server.ledger`), named as the ``plan`` task's XComs are
    (:class:`backfill_controller.contract.XCom`), which are never read: anyone who may edit XComs
    could rewrite them. A run bound to no planned record has no plan; ``error`` is why a run was
    refused. ``recorded``: these runs' records, when the caller has read them already.
    """
    found: dict[int, dict[str, Any]] = {}
    if not keys:
        return found
    if recorded is None:
        recorded = ledger.bound_runs(session, run_pks)
    for pk in run_pks:
        if pk not in recorded:
            continue
        entry, mine = recorded[pk]
        if entry.request is None or entry.backfill_id is None:
            continue  # bound, not planned yet: nothing planned to show
        facts = found.setdefault(pk, {})
        plans: list[dict[str, Any]] | None = None
        for key in keys:
            if key == XCom.REQUEST:
                facts[key] = entry.request
            elif key == XCom.SEGMENTS:
                facts[key] = entry.segments or 1
            elif key == XCom.EXECUTION and mine.execution is not None:
                facts[key] = mine.execution
            elif key in (XCom.PLANS, XCom.RUN_IDS):
                if plans is None:
                    plans = ledger.segment_plans(session, entry.backfill_id, mine.segment)
                if key == XCom.PLANS:
                    facts[key] = plans
                elif not entry.request.get("dry_run"):
                    facts[key] = [p["run_id"] for p in plans if p["action"] in ACTING]
    if XCom.ERROR in keys:
        for pk, message in ledger.refusals_of(session, [pk for pk in run_pks if pk not in found]).items():
            found.setdefault(pk, {})[XCom.ERROR] = message
    return found


def _among(recorded: Recorded, run_pks: Sequence[int]) -> Recorded:
    return {pk: recorded[pk] for pk in run_pks if pk in recorded}


def _planned(recorded: Recorded) -> set[int]:
    """The controller runs (``dag_run.id``) bound to a planned record."""
    return {pk for pk, (entry, _) in recorded.items() if entry.request is not None}


def _reported(recorded: Recorded) -> set[int]:
    """The controller runs (``dag_run.id``) whose ``report`` task began (a run failed without it
    was cancelled)."""
    return {pk for pk, (_, mine) in recorded.items() if mine.reported}


def _chunk_records(session: Session, recorded: Recorded) -> dict[int, dict[int, ChunkRecord]]:
    """``{dag_run.id: {chunk: record}}`` of what each chunk of these runs has acted on, as its
    ``trigger`` task keeps it in the record."""
    rows = {mine.row_id: pk for pk, (_, mine) in recorded.items()}
    found: dict[int, dict[int, ChunkRecord]] = {}
    for row_id, kept in ledger.chunk_records(session, list(rows)).items():
        found[rows[row_id]] = records_by_chunk(kept)
    return found


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
    facts: Mapping[str, Any], records: Mapping[int, ChunkRecord], finished: bool, dry_run: bool
) -> SegmentFacts:
    """A controller run's facts, the target run states still to fill in. A chunk's dates count
    as started as far as its record says: no task instance's state is read."""
    return SegmentFacts(
        plans=facts[XCom.PLANS],
        run_ids=facts.get(XCom.RUN_IDS) or [],
        chunk_size=chunk_size_of(facts.get(XCom.EXECUTION)),
        chunk_states={},
        records=records,
        run_states={},
        finished=finished,
        dry_run=dry_run,
    )


def _runs_to_read(part: SegmentFacts) -> Iterator[str]:
    """The target runs whose state a part's dates show: those it acts on, once its controller run
    has planned, and those the plan left alone. A date of a segment not begun yet is pending
    whatever its run is, so a running backfill of 100,000 dates reads the runs of the segments
    begun, not every date's."""
    acting = set(part.run_ids)
    for plan in part.plans:
        if plan["run_id"] in acting or left_alone(plan["action"]):
            yield str(plan["run_id"])


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
    (:mod:`backfill_controller.server.ledger`'s outcome). A dry run's dates read no target run."""
    rows: dict[str, Any] = {}
    if run_states is None and not all(part.dry_run for part in parts):
        wanted = [r for part in parts for r in _runs_to_read(part)]
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
    ``run_backwards``, descending: :func:`backfill_controller.domain.plan.decide`)."""
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
    """A running backfill's estimated end (:mod:`backfill_controller.domain.eta`) from its target runs' times;
    the target's recent runs' durations are read only when none of its runs has finished."""
    own = acted_on(dates)
    runs = [
        RunTimes(row.start_date, None if d.state in IN_FLIGHT_DATES else row.end_date)
        for d in own
        if d.state in _STARTED and (row := rows.get(d.run_id)) is not None
    ]
    unfinished = sum(1 for d in own if d.state in UNFINISHED_DATES)
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
    request = dict(facts.get(XCom.REQUEST) or conf or {})
    target = request.get("dag_id")
    if target in readable:
        return request, dict(facts), True
    hidden = {key: value for key, value in facts.items() if key not in (XCom.ERROR, XCom.PLANS)}
    return {"dag_id": target}, hidden, False


def _phase_facts(request: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, bool]:
    """What :func:`backfill_controller.domain.state.phase` reads from the request and the plan, as shown."""
    return {"planned": XCom.PLANS in facts, "dry_run": bool(request.get("dry_run"))}


def _progress(dates: Sequence[DateOutcome], tally: Counts, dry_run: bool) -> dict[str, Any]:
    return {
        "dates": tally.dates,
        "acting": 0 if dry_run else tally.acting,
        "finished": 0 if dry_run else tally.finished,
        # A date left alone counts as skipped, as in the tally; its cell shows its run's state.
        "counts": dict(Counter(DateState.SKIPPED.value if d.left_alone else d.state.value for d in dates)),
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
        "window_complete": bool(dates) and window_complete(dates),
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
        "error": facts.get(XCom.ERROR),
        "planned": XCom.PLANS in facts,
        "visible": visible,
        "segments": of_dates["segments"],
        "window_complete": bool(of_dates.get("window_complete")),
        "progress": progress,
        "eta": None,
        "paused": is_paused,
        "history": [applied.to_dict() for applied in history],
    }
    if where == Phase.RUNNING and isinstance(target, str):
        summary["eta"] = _eta(session, run, target, dates, rows, facts.get(XCom.EXECUTION))
    if with_cells:
        summary["cells"] = _cells(dates)
    return summary


def _parts(
    session: Session, heads: Sequence[DagRun], facts: Mapping[int, Mapping[str, Any]], recorded: Recorded
) -> dict[str, list[SegmentFacts]]:
    """Each head run's parts: its own dates, then one per continuation segment (large backfills).

    A segment whose continuation run has not planned yet is read from the head's record. Only runs
    bound to the record count: a run that merely bears a continuation's run id is not one.
    """
    continuations: dict[str, list[str]] = {}
    for head in heads:
        entry = recorded[head.id][0] if head.id in recorded else None
        segments = int(facts.get(head.id, {}).get(XCom.SEGMENTS) or 1)
        token = entry.segment_token if entry is not None else ""
        continuations[head.run_id] = [continuation_run_id(head.run_id, k, token) for k in range(1, segments)]
    later = _runs(session, CONTROLLER_DAG_ID, (r for ids in continuations.values() for r in ids))
    bound = {**recorded, **ledger.bound_runs(session, [row.id for row in later.values()])}
    later_facts = plan_facts(
        session, [row.id for row in later.values()], (XCom.PLANS, XCom.RUN_IDS, XCom.EXECUTION), bound
    )
    records = _chunk_records(session, bound)
    parts: dict[str, list[SegmentFacts]] = {}
    for head in heads:
        own = facts.get(head.id, {})
        if XCom.PLANS not in own or head.id not in recorded:
            parts[head.run_id] = []
            continue
        entry = recorded[head.id][0]
        dry_run = bool((own.get(XCom.REQUEST) or {}).get("dry_run"))
        head_finished = _state(head.state) not in OPEN_RUN
        found = [_part(own, records.get(head.id, {}), head_finished, dry_run)]
        for k, run_id in enumerate(continuations[head.run_id], start=1):
            row = later.get(run_id)
            mine = bound.get(row.id) if row is not None else None
            segment = later_facts.get(row.id, {}) if row is not None else {}
            if (
                row is not None
                and mine is not None
                and mine[0].backfill_id == entry.backfill_id
                and XCom.PLANS in segment
            ):
                finished = _state(row.state) not in OPEN_RUN
                found.append(_part(segment, records.get(row.id, {}), finished, dry_run))
            else:
                assert entry.backfill_id is not None
                plans = ledger.segment_plans(session, entry.backfill_id, k)
                found.append(_part({XCom.PLANS: plans}, {}, head_finished, dry_run))
        parts[head.run_id] = found
    return parts


def _ended(
    session: Session, group: Sequence[DagRun], reported: set[int], *, run_states: bool
) -> dict[str, ledger.Outcome]:
    """The outcomes of these head runs that still hold: the report ran, the run is over, and it
    was not cleared since (``clear_number``)."""
    found = ledger.outcomes(session, [h.run_id for h in group], run_states=run_states)
    return {
        h.run_id: ended
        for h in group
        if (ended := found.get(h.run_id)) is not None
        and ended.clear_number == h.clear_number
        and h.id in reported
        and _state(h.state) not in OPEN_RUN
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
        recorded = ledger.bound_runs(session, [h.id for h in group])
        reported = _reported(recorded)
        ended = _ended(session, group, reported, run_states=with_cells)
        dated = [h.id for h in group if with_cells or h.run_id not in ended]
        undated = [h.id for h in group if h.id not in dated]
        facts = plan_facts(session, dated, _PLAN_KEYS, _among(recorded, dated))
        facts.update(plan_facts(session, undated, _ENDED_KEYS, _among(recorded, undated)))
        for pk in _planned(recorded):
            facts.setdefault(pk, {}).setdefault(XCom.PLANS, None)  # it planned; its plans are not read
        parts = _parts(session, [h for h in group if h.id in dated], facts, recorded)
        histories = ledger.histories(session, [h.run_id for h in group])
        found += [
            _summary(
                h,
                facts.get(h.id, {}),
                parts.get(h.run_id, []),
                session,
                readable,
                h.id in reported,
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
    that never ran counts as over, as the report counts it. None, and nothing recorded, while a
    date is still to start or running. Only the head's ``report`` task asks
    (:func:`backfill_controller.server.controller_runs.keep_report`)."""
    recorded = ledger.bound_runs(session, [head.id])
    facts = plan_facts(session, [head.id], _PLAN_KEYS, recorded).get(head.id, {})
    request = facts.get(XCom.REQUEST) or {}
    parts = [
        replace(p, finished=True) for p in _parts(session, [head], {head.id: facts}, recorded)[head.run_id]
    ]
    target = request.get("dag_id")
    dates: list[DateOutcome] = []
    rows: dict[str, Any] = {}
    if parts and isinstance(target, str):
        dates, rows = _dates(session, target, parts, times=False)
    if any(d.state in UNFINISHED_DATES for d in acted_on(dates)):
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


#: How many of the newest backfills a phase filter (``?state=``) looks at, at most: each request's
#: work is bounded, whatever the history of the deployment.
PHASE_SCAN = 2000


def _heads_in_phase(
    session: Session, heads: ColumnElement[bool], wanted: Phase, readable: set[str]
) -> list[int]:
    """The ids of the head runs among ``heads`` whose backfill is in phase ``wanted``, newest first.

    The phase comes from :func:`backfill_controller.domain.state.phase`, fed what the reader is shown, as in
    :func:`_summary`; only a backfill that may be cancelling or cancelled is read in full. Bounded:
    only the newest :data:`PHASE_SCAN` head runs whose run state that phase allows are looked at.
    """
    rows = session.execute(
        select(DagRun.id, DagRun.run_id, DagRun.state, DagRun.conf)
        .where(heads, _run_state_in(run_states_of(wanted)))
        .order_by(DagRun.id.desc())
        .limit(PHASE_SCAN)
    ).all()
    ids = [row.id for row in rows]
    recorded = ledger.bound_runs(session, ids)
    requests = plan_facts(session, ids, (XCom.REQUEST,), recorded)
    planned = _planned(recorded)
    reported = _reported(recorded)
    histories = ledger.histories(session, [row.run_id for row in rows])
    found: set[int] = set()
    undecided: list[int] = []
    for row in rows:
        facts: dict[str, Any] = {
            **requests.get(row.id, {}),
            **({XCom.PLANS: None} if row.id in planned else {}),
        }
        request, facts, _ = _as_shown(facts, row.conf, readable)
        phases = possible_phases(
            _state(row.state),
            **_phase_facts(request, facts),
            reported=row.id in reported,
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


def misfit(control: Control, shown: Mapping[str, Any]) -> str | None:
    """Why ``control`` does not fit a backfill shown as ``shown`` now, or None
    (:func:`backfill_controller.domain.controls.refusal` of its phase, pause and failed dates)."""
    failed = int(shown["progress"]["tally"]["failed"])
    return refusal(control, Phase(shown["phase"]), bool(shown["paused"]), failed)


def controls_for(user: Any, shown: dict[str, Any], readable: set[str]) -> list[str]:
    """The controls ``user`` may apply to a backfill shown as ``shown`` now (the page's buttons).

    Re-run failed is offered to whoever may trigger the controller; the front door then checks
    the new backfill's rights on the target as for any request.
    """
    target = shown.get("target_dag_id")
    if not shown.get("visible") or target not in readable:
        return []
    fitting = [c for c in Control if misfit(c, shown) is None]
    if not fitting:
        return []
    may_operate = not access.missing_rights(user, CONTROLLER_DAG_ID, [Right.CLEAR_RUNS]) and not (
        access.missing_rights(user, str(target), OPERATE_TARGET)
    )
    may_start = not access.missing_rights(user, CONTROLLER_DAG_ID, [Right.CREATE_RUNS])
    return [c.value for c in fitting if (may_start if c is Control.RERUN_FAILED else may_operate)]


def _with_controls(user: Any, backfills: list[dict[str, Any]], readable: set[str]) -> list[dict[str, Any]]:
    """Each backfill with the ``controls`` the reader may apply to it now (the page's buttons)."""
    return [{**b, "controls": controls_for(user, b, readable) if user is not None else []} for b in backfills]


def backfill_list(
    session: Session,
    user: Any,
    readable: set[str],
    *,
    limit: int,
    offset: int,
    dag_id: str | None,
    state: Phase | None,
) -> dict[str, Any]:
    """One page of the backfills (head runs of the controller), newest first, summed up without
    their cells; of target ``dag_id`` and in phase ``state`` only when given (``GET
    /backfill-controller/api/backfills``)."""
    heads = (DagRun.dag_id == CONTROLLER_DAG_ID) & ~DagRun.run_id.contains(SEGMENT_MARK, autoescape=True)
    if dag_id is not None:
        heads &= target_is(dag_id)
    total, runs = _page(session, heads, state, readable, limit, offset)
    backfills = _with_controls(user, backfills_of(session, runs, readable), readable)
    return {
        "controller_dag_id": CONTROLLER_DAG_ID,
        "total": total,
        "limit": limit,
        "offset": offset,
        # Worth looking again soon: a controller run in flight, or a cancelled backfill whose runs
        # are still finishing.
        "active": any(b["state"] in OPEN_RUN or b["phase"] == Phase.CANCELLING for b in backfills),
        "backfills": backfills,
    }


#: Most cells one answer of the detail holds: a larger backfill's dates come a page at a time.
CELLS_PAGE = 10_000


def backfill_detail(
    run_id: str,
    session: Session,
    user: Any,
    readable: set[str],
    *,
    cells_offset: int = 0,
    cells_limit: int = CELLS_PAGE,
) -> dict[str, Any]:
    """One backfill as the list sums it up, with its cells from the ``cells_offset``-th date (in
    date order), at most ``cells_limit`` of them, and ``cells_total``; 404 for a run that is not one."""
    head = session.scalar(select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == run_id))
    if head is None or SEGMENT_MARK in run_id:
        raise HTTPException(404, detail=f"no backfill has the run id {run_id!r}")
    shown = _with_controls(user, backfills_of(session, [head], readable, with_cells=True), readable)[0]
    cells = shown.pop("cells")
    return {
        **shown,
        "cells_total": len(cells),
        "cells_offset": cells_offset,
        "cells": cells[cells_offset : cells_offset + max(1, min(cells_limit, CELLS_PAGE))],
    }


def backfillable(session: Session, user: Any, readable: set[str]) -> dict[str, Any]:
    """The dag_ids the New backfill form offers ``user`` (at most :data:`_MOST_TARGETS`)."""
    limits = Limits.from_config()
    candidates = session.scalars(
        select(DagModel.dag_id)
        .where(~DagModel.is_stale, DagModel.is_paused.is_(False), DagModel.dag_id != CONTROLLER_DAG_ID)
        .order_by(DagModel.dag_id)
    )
    dag_ids = [
        dag_id
        for dag_id in candidates
        if dag_id in readable
        and limits.refusal(dag_id) is None
        and not access.missing_rights(user, dag_id, [Right.CREATE_RUNS])
    ]
    return {"dag_ids": dag_ids[:_MOST_TARGETS]}


def page() -> HTMLResponse:
    """The Backfills page as served (:data:`PAGE`), never cached."""
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})


def icon(dark: bool) -> Response:
    """The navigation icon, for the light or the dark theme."""
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

#: The page's files: ``backfills.html`` links ``backfills.css`` and ``backfills.js``, which
#: :func:`_page_html` inlines, so the page is one self-contained document (no static routes).
PAGE_DIR = Path(__file__).with_name("page")


def _fill(html: str, placeholder: str, text: str) -> str:
    """``html`` with its one ``placeholder`` replaced by ``text``."""
    if html.count(placeholder) != 1:
        raise ValueError(f"backfills.html must hold {placeholder!r} exactly once")
    return html.replace(placeholder, text)


def _page_html() -> str:
    """The Backfills page as served: ``backfills.html`` with its CSS and script inline and, in its
    JSON blocks, the phases the filter offers (every :class:`~backfill_controller.domain.state.Phase`,
    ``#phases``) and the keys of a request as the trigger form's Params (``#keys``, from
    :mod:`backfill_controller.domain.keys`), which the New backfill form offers."""
    css, js = ((PAGE_DIR / name).read_text(encoding="utf-8") for name in ("backfills.css", "backfills.js"))
    if "</style" in css.lower() or "</script" in js.lower():
        raise ValueError("the page's CSS and script must not close the tag they are inlined in")
    html = _fill(
        (PAGE_DIR / "backfills.html").read_text(encoding="utf-8"),
        "__PHASES__",
        json.dumps([p.value for p in Phase]),
    )
    html = _fill(html, "__KEYS__", json.dumps(form_params(Limits.from_config())).replace("</", "<\\/"))
    html = _fill(html, '<link rel="stylesheet" href="backfills.css">', f"<style>\n{css}</style>")
    return _fill(html, '<script src="backfills.js"></script>', f"<script>\n{js}</script>")


PAGE = _page_html()
