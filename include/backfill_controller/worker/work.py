"""What a controller run does, as the backfill's record in the api-server says: its :class:`Work`.

Every task of the controller takes its work from here and from nowhere else: not from an XCom,
which anyone who may edit the controller's XComs can rewrite, and not from the run's conf. The
``plan`` task receives the work when the api-server plans the run
(:meth:`backfill_controller.client.airflow_api.AirflowApi.plan_run`); every other task asks for it
(:meth:`~backfill_controller.client.airflow_api.AirflowApi.work`) through :func:`work_of`, once
per task process.

The ``trigger`` task is mapped over chunks of the acting dates; its mapped kwargs name only the
chunk (:func:`mapped_kwargs`) and each task instance reads its dates here (:meth:`Work.chunk`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from backfill_controller.contract import MESSAGE_CHARS, XCom
from backfill_controller.domain.plan import Action, DatePlan, Execution, acting, chunk_bounds, chunk_count
from backfill_controller.domain.request import BackfillRequest, parse_request
from backfill_controller.domain.settings import Limits
from backfill_controller.domain.state import ChunkRecord, records_by_chunk

log = logging.getLogger(__name__)

#: HTTP answers of the work endpoint that say this run has no work: it belongs to no planned
#: backfill (404), or is not the run its backfill was made with (409, cleared since).
NO_WORK = frozenset({404, 409})


class InconsistentWork(ValueError):
    """The api-server's answer contradicts itself; nothing is acted on."""


@dataclass(frozen=True)
class Chunk:
    """One ``trigger`` task instance's dates: ``first_position`` among the run's acting dates, and
    each date as the task starts it (:func:`date_to_start`)."""

    index: int
    first_position: int
    dates: tuple[dict[str, Any], ...]
    label: str


@dataclass(frozen=True)
class Work:
    """One controller run's work: the backfill's normalized request, this run's segment of its
    dates (``plans``, in run order), the target runs it acts on (``run_ids``: the acting plans'
    run ids, in order; none in a dry run) and how it feeds them (``execution``; None in a dry run).

    ``segment`` is 0 for the head run, k for continuation k; ``segments`` how many the backfill
    has; ``requester`` who it acts for (the audit note names them).
    """

    backfill_id: int
    head_run_id: str
    segment: int
    segments: int
    requester: str | None
    request: BackfillRequest
    plans: tuple[DatePlan, ...]
    run_ids: tuple[str, ...]
    execution: Execution | None
    dates: int = 0
    """How many dates the whole backfill has, every segment's."""
    continuation_run_ids: tuple[str, ...] = ()
    """The head run's continuation runs, segment 1 first (their ids are the record's to give)."""

    def continuation_run_id(self, segment: int) -> str:
        """The run id of continuation ``segment`` (1-based) of this head run."""
        if not 1 <= segment <= len(self.continuation_run_ids):
            raise InconsistentWork(f"the record names no continuation run for segment {segment}")
        return self.continuation_run_ids[segment - 1]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Work:
        """Parse the api-server's WORK document; :class:`InconsistentWork` when its parts disagree."""
        request = parse_request(data["request"], limits=Limits.from_config(), now=None)
        execution = data.get("execution")
        work = cls(
            backfill_id=int(data["backfill_id"]),
            head_run_id=str(data["head_run_id"]),
            segment=int(data["segment"]),
            segments=max(1, int(data["segments"])),
            requester=data.get("requester"),
            request=request,
            plans=tuple(DatePlan.from_dict(p) for p in data["plans"]),
            run_ids=tuple(str(r) for r in data.get("run_ids") or ()),
            execution=Execution.from_dict(execution) if execution else None,
            dates=int(data.get("dates") or len(data["plans"])),
            continuation_run_ids=tuple(str(r) for r in data.get("continuation_run_ids") or ()),
        )
        work._check()
        return work

    def _check(self) -> None:
        planned = tuple(p.run_id for p in self.acting)
        if self.run_ids != planned:
            raise InconsistentWork(
                f"its run ids {list(self.run_ids)} are not its acting dates' {list(planned)}"
            )
        if self.execution is None:
            return
        if self.execution.target_dag_id != self.request.target_dag_id:
            raise InconsistentWork(
                f"its execution targets {self.execution.target_dag_id!r}, its request "
                f"{self.request.target_dag_id!r}"
            )
        if self.execution.total != len(planned):
            raise InconsistentWork(
                f"its execution counts {self.execution.total} dates, its plan {len(planned)}"
            )

    @property
    def acting(self) -> list[DatePlan]:
        """The dates this run triggers or clears, in run order (none in a dry run)."""
        return [] if self.request.dry_run else acting(self.plans)

    def plan_dicts(self) -> list[dict[str, Any]]:
        """The plans as :meth:`DatePlan.to_dict` gives them (what readers of a run's dates take)."""
        return [p.to_dict() for p in self.plans]

    @property
    def chunk_count(self) -> int:
        """How many ``trigger`` task instances this run maps (none without an execution)."""
        if self.execution is None:
            return 0
        return chunk_count(len(self.acting), self.execution.chunk_size)

    def chunk(self, index: int) -> Chunk:
        """The dates of chunk ``index`` (0-based; empty past the last chunk)."""
        if self.execution is None:
            return Chunk(index, 0, (), "")
        dates = self.acting
        bounds = chunk_bounds(index, self.execution.chunk_size, len(dates))
        plans = [dates[i] for i in bounds]
        return Chunk(
            index=index,
            first_position=bounds.start if plans else len(dates),
            dates=tuple(date_to_start(p) for p in plans),
            label=dates_label(plans),
        )


def date_to_start(plan: DatePlan) -> dict[str, Any]:
    """One date as a ``trigger`` task starts it: the run to create or clear (``trigger_run_id``),
    ``logical_date``, ``run_after``, whether the run is cleared (``reset_dag_run``), which task
    instances only (``clear_task_ids``), and the run's ``end_date`` when planned
    (``planned_end_date``: a retry tells a clear done since from one still to do)."""
    return {
        "trigger_run_id": plan.run_id,
        "logical_date": plan.logical_date.isoformat(),
        "run_after": plan.date.run_after.isoformat(),
        "reset_dag_run": plan.action is Action.CLEARED,
        "clear_task_ids": list(plan.task_ids) if plan.task_ids is not None else None,
        "planned_end_date": plan.existing_end_date,
    }


def dates_label(plans: Sequence[DatePlan]) -> str:
    """How a chunk is shown as its map index: its first and last logical dates."""
    if not plans:
        return ""
    first, last = plans[0].logical_date.isoformat(), plans[-1].logical_date.isoformat()
    return first if len(plans) == 1 else f"{first} .. {last}"


def mapped_kwargs(work: Work) -> list[dict[str, Any]]:
    """The ``trigger`` task's mapped kwargs: which chunk each task instance is, and its label. No
    date, target or conf: a task instance reads those from the record (:meth:`Work.chunk`)."""
    return [{"chunk_index": k, "dates_label": work.chunk(k).label} for k in range(work.chunk_count)]


#: The work fetched by this task process, by controller run id.
_FETCHED: dict[str, Work] = {}
#: This task process's part of the result, by controller run id (built once:
#: :func:`backfill_controller.worker.tasks.own_part`).
PARTS: dict[str, dict[str, Any]] = {}
#: This task process's REST client, logged in once (:func:`api`).
_CLIENT: list[Any] = []


def api() -> Any:
    """This task process's client of the api-server (``AirflowApi`` from the ``airflow_api``
    connection), made and logged in once: every call of a task shares one login, which costs a
    password check in the api-server (with FAB, a deliberately slow hash)."""
    from backfill_controller.client.airflow_api import AirflowApi

    if not _CLIENT:
        _CLIENT.append(AirflowApi.from_connection())
    return _CLIENT[0]


def remember(run_id: str, data: Mapping[str, Any]) -> Work:
    """Parse ``data`` (WORK as the api-server answered it for ``run_id``) and keep it for this process."""
    work = _parsed(data)
    _FETCHED[run_id] = work
    return work


def forget() -> None:
    """Drop the work, the part of the result and the client this process holds (the next
    :func:`work_of` asks the api-server again, logged in again)."""
    _FETCHED.clear()
    PARTS.clear()
    _CLIENT.clear()


def work_of(context: Mapping[str, Any]) -> Work:
    """This controller run's work, asked of the api-server once per task process (a task resumed
    from a deferral runs in a new process and asks again). Fails the task when the run has no work."""
    from airflow.sdk.exceptions import AirflowFailException

    found = work_if_planned(context)
    if found is None:
        raise AirflowFailException(
            f"controller run {context['ti'].run_id} belongs to no planned backfill; see the plan task's log"
        )
    return found


def work_if_planned(context: Mapping[str, Any]) -> Work | None:
    """This controller run's work, or None when the api-server holds none for it (the plan task
    failed or has not planned it, or the run was cleared since it was planned)."""
    from airflow.sdk.exceptions import AirflowFailException

    from backfill_controller.client.rest import ApiError

    run_id = str(context["ti"].run_id)
    if run_id in _FETCHED:
        return _FETCHED[run_id]
    try:
        data = api().work(run_id)
    except ApiError as exc:
        if exc.status in NO_WORK:
            return None
        if exc.status is not None and exc.status < 500:
            raise AirflowFailException(f"the api-server refused this run's work: {exc.detail}") from None
        raise
    return remember(run_id, data)


def refuse(ti: Any, message: str) -> NoReturn:
    """Fail the task: this run gets no work, and ``message`` says why. The reason is kept in the
    backfill's record for the Backfills page (best effort) and as the ``plan`` task's XCom
    ``error``, which the run's report shows."""
    from airflow.sdk.exceptions import AirflowFailException

    from backfill_controller.client.rest import ApiError

    ti.xcom_push(key=XCom.ERROR, value=message)
    try:
        api().keep_refusal(str(ti.run_id), message[:MESSAGE_CHARS])
    except (ApiError, OSError) as exc:
        log.warning("the Backfills page will not show why this run was refused: %s", exc)
    raise AirflowFailException(message)


def kept_chunks(run_id: str) -> dict[int, ChunkRecord]:
    """What each chunk of controller run ``run_id`` has acted on, as the backfill's record keeps it
    (asked of the api-server)."""
    return records_by_chunk(api().chunks(run_id))


def _parsed(data: Mapping[str, Any]) -> Work:
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return Work.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:  # InconsistentWork and InvalidRequest too
        raise AirflowFailException(
            f"the api-server's answer is not this run's work: {type(exc).__name__}: {exc}"
        ) from None
