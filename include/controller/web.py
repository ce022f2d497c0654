"""The controller's HTTP endpoints, served inside the api-server by ``plugins/backfill_controller_plugin.py``.

``POST /backfill-controller/api/dags/{dag_id}/dates`` expands a request's dates with the target's
timetable as the scheduler knows it (the serialized DAG in the metadata database), the same
object native backfill uses. Tasks cannot read the database, so this is how the controller learns
its target's schedule. Access needs the same credentials and DAG permission as ``GET /api/v2/dags/{dag_id}``.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, HTTPException

from include.backfill.request import InvalidRequest, parse_request
from include.backfill.schedule import ScheduleError, expand
from include.backfill.settings import Limits
from include.controller.ui import router as backfills_page

app = FastAPI(title="Backfill Controller", description="Plans backfills with each DAG's own timetable.")

_DATE_KEYS = ("start_date", "end_date", "dates")


@app.post("/api/dags/{dag_id}/dates", dependencies=[Depends(requires_access_dag(method="GET"))])
def scheduled_dates(dag_id: str, body: dict[str, Any], session: SessionDep) -> dict[str, Any]:
    """The logical dates, run_after and data intervals a request covers, oldest first."""
    from airflow.models.dagbag import DBDagBag

    dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
    if dag is None:
        raise HTTPException(404, {"field": "dag_id", "message": f"no DAG {dag_id!r}"})
    now = pendulum.now("UTC")
    try:
        limits = Limits.from_env()
        request = parse_request(
            {"dag_id": dag_id, **{k: body.get(k) for k in _DATE_KEYS}}, limits=limits, now=now
        )
        dates = expand(dag.timetable, request, now, limit=limits.max_dates_per_request)
    except InvalidRequest as exc:
        raise HTTPException(422, {"field": exc.errors[0].field, "message": str(exc)}) from None
    except ScheduleError as exc:
        raise HTTPException(422, {"field": exc.field, "message": str(exc)}) from None
    return {
        "dag_id": dag_id,
        "timetable": dag.timetable.summary,
        "periodic": bool(dag.timetable.periodic),
        "dates": [d.to_dict() for d in dates],
    }


app.include_router(backfills_page)
