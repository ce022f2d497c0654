"""WORK documents as the api-server serves them (``GET .../controller_runs/{run_id}/work``), written
by hand for the controller's task tests: a request, its dates' plans, and how the run feeds them.

:class:`Served` stands in for the api-server: the autouse fixtures of the task tests answer
``AirflowApi.work`` (and ``plan_run``) from it, as the real endpoint would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pendulum

from backfill_controller.client.rest import ApiError
from backfill_controller.contract import TARGET_RUN_PREFIX, continuation_run_id
from backfill_controller.domain.plan import Action, DatePlan, Execution, Feeding
from backfill_controller.domain.request import parse_request
from backfill_controller.domain.schedule import ScheduledDate
from backfill_controller.domain.settings import Limits

HEAD = "manual__1"
FEEDING = Feeding(window=2, deferred=False, resume_at=1, chunk_size=2)


def date_plan(
    day: int,
    run_id: str | None = None,
    action: Action = Action.TRIGGERED,
    *,
    task_ids: Sequence[Any] | None = None,
    end_date: str | None = None,
) -> dict[str, Any]:
    """The plan of the daily date ``2024-01-<day>`` (run after its interval ends, the next day)."""
    logical = pendulum.datetime(2024, 1, day, tz="UTC")
    after = logical.add(days=1)
    run_id = run_id or f"{TARGET_RUN_PREFIX}{logical.isoformat()}"
    existing = "failed" if action is Action.CLEARED else None
    plan = DatePlan(
        ScheduledDate(logical, after, logical, after),
        run_id,
        action,
        "planned",
        existing,
        end_date,
        tuple(task_ids) if task_ids is not None else None,
    )
    return plan.to_dict()


def plans(*run_ids: str, first_day: int = 1) -> list[dict[str, Any]]:
    """New dates, one a day from ``first_day``, under these run ids."""
    return [date_plan(first_day + i, run_id) for i, run_id in enumerate(run_ids)]


def work_document(
    dates: Sequence[dict[str, Any]] | None = None,
    *,
    dag_id: str = "sales",
    feeding: Feeding = FEEDING,
    max_failed_dates: int | None = None,
    failed_before: int = 0,
    deadline: float | None = None,
    segment: int = 0,
    segments: int = 1,
    head_run_id: str = HEAD,
    requester: str | None = "ada",
    **request: Any,
) -> dict[str, Any]:
    """The WORK of one controller run; ``request`` holds further request keys (``conf``,
    ``reprocess``, ``dry_run``, ``reason``...)."""
    dates = list(dates if dates is not None else [date_plan(1)])
    conf = {
        "dag_id": dag_id,
        "dates": [d["logical_date"] for d in dates] or ["2024-01-01"],
        "reason": "why",
        **({"max_failed_dates": max_failed_dates} if max_failed_dates is not None else {}),
        **request,
    }
    parsed = parse_request(conf, limits=Limits(), now=None)
    acting = [] if parsed.dry_run else [d["run_id"] for d in dates if d["action"] in ("triggered", "cleared")]
    execution = Execution(
        target_dag_id=dag_id,
        feeding=feeding,
        max_failed_dates=max_failed_dates,
        failed_before=failed_before,
        deadline=deadline,
        total=len(acting),
    )
    return {
        "backfill_id": 7,
        "head_run_id": head_run_id,
        "segment": segment,
        "segments": segments,
        "requester": requester,
        "request": parsed.to_dict(),
        "plans": dates,
        "run_ids": acting,
        "execution": None if parsed.dry_run else execution.to_dict(),
        "continuation_run_ids": [continuation_run_id(head_run_id, k) for k in range(1, segments)]
        if segment == 0
        else [],
    }


class Served:
    """The works the api-server holds, by controller run id; any other run has none (HTTP 404)."""

    def __init__(self) -> None:
        self.works: dict[str, dict[str, Any]] = {}

    def work(self, run_id: str, segment: int | None = None) -> dict[str, Any]:
        """The run's work; with ``segment``, that segment's dates as the head may read them (held
        as ``works[f"{run_id}#{segment}"]``; none held: HTTP 409)."""
        if segment is not None:
            if f"{run_id}#{segment}" not in self.works:
                raise ApiError(409, f"segment {segment} is not one this run may read")
            return self.works[f"{run_id}#{segment}"]
        if run_id not in self.works:
            raise ApiError(404, f"controller run {run_id!r} belongs to no planned backfill")
        return self.works[run_id]
