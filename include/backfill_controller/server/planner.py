"""Plan a backfill request against the live target, in the api-server, for one requester.

This is the one place a request is checked against its target: the front door (``POST
/backfill-controller/api/backfills`` and its ``dry_run``) and the controller's ``plan`` task (which
asks the api-server, having no database itself) both call :func:`plan_request`. In order:

1. the conf is parsed (:func:`backfill_controller.domain.request.parse_request`: every field problem);
2. the requester's rights on the target are checked (:mod:`backfill_controller.server.access`) before
   anything of the target is read, so a refusal reveals nothing about it;
3. the target is read from the metadata database: it exists, is not paused, accepts runs
   triggered by an operator, its Params accept the conf, the ``task_regex`` selects tasks, the
   dates fit its timetable (the serialized DAG's, the same object native backfill uses);
4. each date is decided (:func:`backfill_controller.domain.plan.decide`) from the target's existing runs.

The session's connection is given back while the dates are expanded and decided
(:func:`backfill_controller.server.admission.release`): a request holds one only while it reads.

Every problem of steps 3 and 4 is collected and reported at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pendulum
from pendulum import DateTime
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.airflow_states import OPEN_RUN
from backfill_controller.domain.params import conf_errors
from backfill_controller.domain.plan import DatePlan, ExistingRun, decide
from backfill_controller.domain.request import BackfillRequest, FieldError, InvalidRequest, parse_request
from backfill_controller.domain.rights import rights_needed
from backfill_controller.domain.schedule import ScheduledDate, ScheduleError, expand
from backfill_controller.domain.selection import select_tasks
from backfill_controller.domain.settings import Limits
from backfill_controller.server import access, admission

_BATCH = 500  # bound parameters per IN (...): far below SQLite's limit


@dataclass(frozen=True)
class Planned:
    """A request checked against its live target, and the decision for each of its dates."""

    request: BackfillRequest
    plans: list[DatePlan]
    target_max_active_runs: int | None
    selected_tasks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request.to_dict(),
            "plans": [p.to_dict() for p in self.plans],
            "target_max_active_runs": self.target_max_active_runs,
            "selected_tasks": list(self.selected_tasks),
        }


def parse(conf: Mapping[str, Any], now: DateTime | None = None) -> BackfillRequest:
    """The request ``conf`` describes (raises :class:`InvalidRequest` with every field problem)."""
    return parse_request(
        conf,
        limits=Limits.from_config(),
        now=now or pendulum.now("UTC"),
        controller_dag_id=CONTROLLER_DAG_ID,
    )


def plan_request(
    request: BackfillRequest, *, user: Any, session: Session, authorized: bool = False
) -> Planned:
    """Authorize ``user`` for ``request``, then check it against the live target and decide each date.

    ``authorized``: the request was authorized already, for the same requester, when it came in
    through the front door (recorded in the ledger); ``user`` is then not asked about again.
    Raises :class:`backfill_controller.server.access.Forbidden` (nothing of the target was read) or
    :class:`InvalidRequest` (every problem found).
    """
    target_id = request.target_dag_id
    if not authorized:
        access.require(user, target_id, rights_needed(request))

    from airflow.models.dag import DagModel
    from airflow.models.dagbag import DBDagBag

    model = session.scalar(select(DagModel).where(DagModel.dag_id == target_id, ~DagModel.is_stale))
    dag = DBDagBag().get_latest_version_of_dag(target_id, session=session) if model else None
    if model is None or dag is None:
        raise InvalidRequest(
            [FieldError("dag_id", target_id, "no such DAG in this Airflow", "an existing dag_id")]
        )
    errors = _target_errors(request, model)
    target_max_active_runs = model.max_active_runs
    admission.release(session)  # what follows computes; the runs are read after, briefly
    errors += conf_errors(request.conf, {k: v.dump() for k, v in dag.params.items()})
    selected: tuple[str, ...] = ()
    if request.task_regex is not None:
        graph = {task.task_id: sorted(task.downstream_task_ids) for task in dag.tasks}
        try:
            selected = select_tasks(
                graph,
                request.task_regex,
                include_upstream=request.include_upstream,
                include_downstream=request.include_downstream,
            )
        except InvalidRequest as exc:
            errors += exc.errors
    dates: list[ScheduledDate] = []
    try:
        dates = expand(
            dag.timetable, request, pendulum.now("UTC"), limit=Limits.from_config().max_dates_per_request
        )
    except ScheduleError as exc:
        given = {
            "dates": [d.isoformat() for d in request.dates or ()] or None,
            "start_date": request.start_date.isoformat() if request.start_date else None,
            "end_date": request.end_date.isoformat() if request.end_date else None,
        }
        shown = given.get(exc.field)
        errors.append(
            FieldError(
                exc.field, shown, str(exc).removeprefix(f"{exc.field}: "), "dates of the target's schedule"
            )
        )
    if errors:
        raise InvalidRequest(errors)
    existing = _existing_runs(session, target_id, dates)
    ti_states = None
    if selected:
        finished = [r.run_id for r in existing.values() if r.state not in OPEN_RUN]
        ti_states = _ti_states(session, target_id, finished, selected)
    admission.release(session)
    plans = decide(dates, existing, request, selected_tasks=selected, ti_states=ti_states)
    return Planned(request, plans, target_max_active_runs, selected)


def _target_errors(request: BackfillRequest, model: Any) -> list[FieldError]:
    from airflow.utils.types import DagRunType

    target_id = request.target_dag_id
    errors = []
    if model.is_paused:
        errors.append(
            FieldError(
                "dag_id",
                target_id,
                "the target is paused, so its runs would wait forever; unpause it first "
                f"(UI toggle, or `airflow dags unpause {target_id}`)",
                "an unpaused DAG",
            )
        )
    allowed = model.allowed_run_types
    if allowed is not None and DagRunType.OPERATOR_TRIGGERED.value not in [str(t) for t in allowed]:
        errors.append(
            FieldError(
                "dag_id",
                target_id,
                f"the target allows only runs of type {', '.join(map(str, allowed))} (allowed_run_types); "
                "the controller creates operator-triggered runs",
                "a DAG that allows operator_triggered runs",
            )
        )
    return errors


def _existing_runs(
    session: Session, dag_id: str, dates: Sequence[ScheduledDate]
) -> dict[DateTime, ExistingRun]:
    """The target's runs at the requested logical dates, by logical date."""
    from airflow.models.dagrun import DagRun

    if not dates:
        return {}
    first, last = min(d.logical_date for d in dates), max(d.logical_date for d in dates)
    rows = session.execute(
        select(DagRun.run_id, DagRun.state, DagRun.logical_date, DagRun.end_date).where(
            DagRun.dag_id == dag_id, DagRun.logical_date >= first, DagRun.logical_date <= last
        )
    )
    found = {}
    for row in rows:
        logical_date = pendulum.instance(row.logical_date).in_timezone("UTC")
        end_date = pendulum.instance(row.end_date).in_timezone("UTC").isoformat() if row.end_date else None
        found[logical_date] = ExistingRun(row.run_id, _state(row.state), logical_date, end_date)
    return found


def _ti_states(
    session: Session, dag_id: str, run_ids: Sequence[str], task_ids: Sequence[str]
) -> dict[str, dict[tuple[str, int], str | None]]:
    """``{run_id: {(task_id, map_index): state}}`` of the selected tasks in the given runs."""
    from airflow.models.taskinstance import TaskInstance

    result: dict[str, dict[tuple[str, int], str | None]] = {r: {} for r in run_ids}
    for batch in _batches(run_ids):
        rows = session.execute(
            select(
                TaskInstance.run_id, TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state
            ).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id.in_(batch),
                TaskInstance.task_id.in_(list(task_ids)),
            )
        )
        for row in rows:
            result.setdefault(row.run_id, {})[(row.task_id, row.map_index)] = _state(row.state)
    return result


def _batches(values: Iterable[str]) -> Iterable[list[str]]:
    items = list(values)
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def _state(value: Any) -> Any:
    return None if value is None else str(getattr(value, "value", value))
