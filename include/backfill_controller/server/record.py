"""A backfill's record: kept once it is planned, bound to its controller runs, served to its tasks.

A backfill is one record (:mod:`backfill_controller.server.ledger`), written only here, in the
api-server: its requester, target, normalized request and every date's plan, and the controller
runs it was made with, bound by ``DagRun.id`` and ``clear_number``. A controller run gets work only
while it is the run its record was made with:

* a run re-created under an old run_id (another ``DagRun.id``) is refused: the record is not its;
* a cleared run (another ``clear_number``) is refused: clearing would replay the backfill, as its
  requester, whoever cleared it; re-running a backfill's failed dates is ``rerun_failed``, a new
  backfill authorized for the caller;
* a continuation run is genuine only when its head's record planned that segment and the head run
  is still the one it was made with.

Tasks receive their work (:func:`work`) from here, never from an XCom or the run's conf: the
request, this run's dates and how it feeds the target (:class:`backfill_controller.domain.plan.Execution`,
computed here when the run is bound).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.contract import (
    CONTINUES_KEY,
    CONTROLLER_DAG_ID,
    MESSAGE_CHARS,
    URL_PREFIX,
    continuation_run_id,
)
from backfill_controller.domain.plan import DatePlan, Execution, acting, acting_run_ids, chunk_count, feeding
from backfill_controller.domain.request import BackfillRequest, parse_request
from backfill_controller.domain.segments import split
from backfill_controller.domain.settings import Limits, segment_size, timeout_minutes
from backfill_controller.domain.state import ChunkRecord
from backfill_controller.server import ledger
from backfill_controller.server.planner import Planned

RERUN_FAILED = f"POST {URL_PREFIX}/api/backfills/{{run_id}}/rerun_failed"


class NotBound(Exception):
    """The controller run is not the run its backfill's record was made with; says what to do."""


class NoRecord(NotBound):
    """The controller run belongs to no planned backfill."""


def bind_head(session: Session, run: Any, target_dag_id: str, requester: str | None) -> ledger.Entry:
    """The record of the backfill that head run ``run`` starts, its run bound as segment 0.

    Creates the record where the run has none. A record of that run_id bound to another run, or
    to this run before it was cleared, raises :class:`NotBound`.
    """
    entry = ledger.entry(session, run.run_id)
    if entry is None:
        ledger.record(session, ledger.Entry(run.run_id, target_dag_id, requester, None, ()))
        entry = ledger.entry(session, run.run_id)
    assert entry is not None and entry.backfill_id is not None
    head = ledger.bound(session, entry.backfill_id, 0)
    if head is None:
        ledger.bind(session, entry.backfill_id, 0, run)
    else:
        check(run, head)
    return entry


def check(run: Any, bound: ledger.BoundRun) -> None:
    """Raise :class:`NotBound` unless ``run`` is the run ``bound`` names, as it was then."""
    if run.id != bound.dag_run_pk:
        raise NotBound(
            f"controller run {run.run_id!r} was created after the backfill recorded under that run_id "
            "was made, so it is not that backfill's run and gets no work; start a backfill through "
            f"the front door (POST {URL_PREFIX}/api/backfills)"
        )
    if (run.clear_number or 0) != bound.clear_number:
        raise NotBound(
            f"controller run {run.run_id!r} was cleared after its backfill was made, and a cleared "
            "controller run gets no work (it would repeat the backfill as its requester); re-run its "
            f"failed dates with rerun_failed ({RERUN_FAILED.format(run_id=run.run_id)}) or start a "
            "new backfill"
        )


def is_planned(entry: ledger.Entry) -> bool:
    return entry.request is not None


def keep(
    session: Session, entry: ledger.Entry, planned: Planned, conf: Mapping[str, Any]
) -> tuple[list[DatePlan], Execution]:
    """Keep the plan of the backfill ``entry`` (claimed, its head bound): the request, every date
    by segment, and how its head run feeds the target. Returns the head run's dates and execution."""
    assert entry.backfill_id is not None
    request = planned.request
    parts = split(planned.plans, request.segment_size or segment_size())
    ledger.keep_plan(
        session, entry.backfill_id, request.to_dict(), [[p.to_dict() for p in part] for part in parts]
    )
    execution = _execution(
        request,
        parts[0],
        failed_before=0,
        feed=feeding(
            request.max_active_runs,
            planned.target_max_active_runs,
            chunk_size=request.chunk_size if conf.get("chunk_size") is not None else None,
            failure_budget=request.max_failed_dates is not None,
        ),
    )
    ledger.set_execution(session, entry.backfill_id, 0, execution.to_dict())
    return list(parts[0]), execution


def _execution(
    request: BackfillRequest, plans: Sequence[DatePlan], *, failed_before: int, feed: Any
) -> Execution:
    return Execution(
        target_dag_id=request.target_dag_id,
        feeding=feed,
        max_failed_dates=request.max_failed_dates,
        failed_before=failed_before,
        deadline=time.time() + 60 * (request.timeout_minutes or timeout_minutes()),
        total=0 if request.dry_run else len(acting(plans)),
    )


def bind_continuation(session: Session, run: Any, continues: Any) -> tuple[ledger.Entry, ledger.BoundRun]:
    """The record and bound run of continuation run ``run``, binding it the first time it asks.

    Genuine only when: it was triggered by the controller (run type ``operator_triggered``), its
    run_id is its head's with its segment, the head is still the run its record was made with and
    planned that segment, the requester is the head's, and the segment is bound to no other run.
    Raises :class:`NotBound` otherwise.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.types import DagRunType

    head_id = str(continues.get("head_run_id")) if isinstance(continues, dict) else ""
    segment = continues.get("segment") if isinstance(continues, dict) else None
    refusal = NotBound(f"{CONTINUES_KEY!r} is the controller's own key: no request may hold it")
    run_type = str(getattr(run.run_type, "value", run.run_type))
    if (
        run_type != DagRunType.OPERATOR_TRIGGERED.value
        or not isinstance(segment, int)
        or isinstance(segment, bool)
    ):
        raise refusal
    head_run = session.scalar(
        select(DagRun).where(DagRun.dag_id == CONTROLLER_DAG_ID, DagRun.run_id == head_id)
    )
    entry = ledger.entry(session, head_id)
    if head_run is None or entry is None or entry.backfill_id is None or not is_planned(entry):
        raise refusal
    if run.run_id != continuation_run_id(head_id, segment, entry.segment_token):
        raise refusal
    head = ledger.bound(session, entry.backfill_id, 0)
    if head is None or head.execution is None or not 1 <= segment < (entry.segments or 1):
        raise refusal
    check(head_run, head)
    if head_run.triggering_user_name != run.triggering_user_name:
        raise refusal
    mine = ledger.bound(session, entry.backfill_id, segment)
    if mine is not None:
        check(run, mine)
        return entry, mine
    ledger.bind(session, entry.backfill_id, segment, run)
    failed_before = continues.get("failed_before", 0)
    failed_before = failed_before if isinstance(failed_before, int) and failed_before >= 0 else 0
    request = _request(entry)
    plans = [DatePlan.from_dict(p) for p in ledger.segment_plans(session, entry.backfill_id, segment)]
    feed = Execution.from_dict(head.execution).feeding
    execution = _execution(request, plans, failed_before=failed_before, feed=feed)
    ledger.set_execution(session, entry.backfill_id, segment, execution.to_dict())
    mine = ledger.bound(session, entry.backfill_id, segment)
    assert mine is not None
    return entry, mine


def bound_run_of(session: Session, run: Any) -> tuple[ledger.Entry, ledger.BoundRun]:
    """The record and bound run of controller run ``run``; :class:`NotBound` when it has none (or
    is not the run it was bound as)."""
    mine = ledger.bound_by_pk(session, run.id)
    entry = ledger.entry_by_id(session, mine.backfill_id) if mine is not None else None
    if mine is None or entry is None or not is_planned(entry):
        raise NoRecord(f"controller run {run.run_id!r} belongs to no planned backfill")
    check(run, mine)
    return entry, mine


def work(
    session: Session, entry: ledger.Entry, mine: ledger.BoundRun, segment: int | None = None
) -> dict[str, Any]:
    """What the controller run ``mine`` of backfill ``entry`` does: its request, its segment's
    dates in run order, the target runs it acts on, and how it feeds them; ``dates`` counts every
    date of the backfill.

    ``segment``: the head run asks for another segment's dates and, once that segment's run has
    reported, its part of the result (``report``); that answer has no ``execution``. Any other run
    asks only for its own.
    """
    assert entry.backfill_id is not None and entry.request is not None
    request = _request(entry)
    own = segment is None or segment == mine.segment
    if not own and (mine.segment != 0 or not 0 <= segment < (entry.segments or 1)):  # type: ignore[operator]
        raise NotBound(f"segment {segment} is not one this run may read")
    shown = mine.segment if segment is None else segment
    stored = ledger.segment_plans(session, entry.backfill_id, shown)
    other = ledger.bound(session, entry.backfill_id, shown) if not own else None
    return {
        "backfill_id": entry.backfill_id,
        "head_run_id": entry.controller_run_id,
        "segment": shown,
        "segments": entry.segments or 1,
        "dates": ledger.date_count(session, entry.backfill_id),
        "requester": entry.requester,
        "request": entry.request,
        "plans": stored,
        "run_ids": [] if request.dry_run else acting_run_ids(stored),
        "execution": None if request.dry_run or not own else mine.execution,
        "continuation_run_ids": [
            continuation_run_id(entry.controller_run_id, k, entry.segment_token)
            for k in range(1, entry.segments or 1)
        ]
        if mine.segment == 0
        else [],
        # Another segment's part of the result, once its run reported (the head's report reads it).
        "report": other.report if other is not None else None,
    }


class BadAccount(ValueError):
    """What a task reported does not fit its run's work; names what is wrong."""


def keep_chunk(session: Session, mine: ledger.BoundRun, chunk: int, body: Any) -> None:
    """Keep what chunk ``chunk`` of the bound run ``mine`` has acted on, as its ``trigger`` task
    says (:class:`backfill_controller.domain.state.ChunkRecord`); :class:`BadAccount` when the
    account names a chunk, a count or a run this run's work does not have."""
    if mine.execution is None:
        raise BadAccount("this run acts on no date, so it has no chunk")
    execution = Execution.from_dict(mine.execution)
    size, total = execution.chunk_size, execution.total
    if not 0 <= chunk < chunk_count(total, size):
        raise BadAccount(f"chunk {chunk} is not one of this run's {chunk_count(total, size)} chunks")
    record = ChunkRecord.from_dict(body)
    if record is None or record.chunk != chunk:
        raise BadAccount(f"the body is not the record of chunk {chunk}")
    run_ids = ledger.acting_run_ids(session, mine.backfill_id, mine.segment, chunk * size, size)
    if not 0 <= record.acted <= len(run_ids):
        raise BadAccount(f"acted is {record.acted}; chunk {chunk} has {len(run_ids)} dates")
    strange = sorted(set(record.events) - set(run_ids))
    if strange:
        raise BadAccount(f"events name runs that are not chunk {chunk}'s: {strange[:3]}")
    texts = [record.stopped or "", *(e.message for e in record.events.values())]
    if any(len(text) > MESSAGE_CHARS for text in texts):
        raise BadAccount(f"a message is longer than {MESSAGE_CHARS} characters")
    ledger.keep_chunk(session, mine, chunk, record.to_dict())


def chunks_of(session: Session, mine: ledger.BoundRun) -> list[dict[str, Any]]:
    """What each chunk of the bound run ``mine`` has acted on, as kept (chunk order)."""
    return ledger.chunk_records(session, [mine.row_id]).get(mine.row_id, [])


def _request(entry: ledger.Entry) -> BackfillRequest:
    """The record's request, as it was normalized when the backfill was planned."""
    assert entry.request is not None
    return parse_request(entry.request, limits=Limits.from_config(), now=None)


def refusal(exc: NotBound) -> HTTPException:
    """The HTTP answer to a run that is not its record's: 409, saying what to do instead (404 for a
    run of no planned backfill)."""
    return HTTPException(404 if isinstance(exc, NoRecord) else 409, {"message": str(exc)})
