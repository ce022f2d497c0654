"""The plugin's HTTP routes, served inside the api-server under ``/backfill-controller``
(:class:`backfill_controller.plugin.BackfillControllerPlugin`).

This module only routes: it creates the FastAPI app and declares every endpoint (path, method,
status, rights, parameters, and the docstring that documents it), and each endpoint hands its
work to the module that owns it. Every endpoint is authenticated like Airflow's own (the caller's
bearer token, or the UI's cookie) and answers for the caller's rights on the target DAG
(:mod:`backfill_controller.server.access`).

The front door, for people and other systems (:mod:`backfill_controller.server.front_door`):

* ``POST /backfill-controller/api/backfills`` checks a request against the live target and
  creates the ``backfill_controller`` run for the caller (201);
* ``POST /backfill-controller/api/backfills/dry_run`` answers the per-date plan, creating nothing.

For the controller's own tasks (:mod:`backfill_controller.server.controller_runs`, except where named):

* ``POST /backfill-controller/api/controller_runs/{run_id}/plan``: the ``plan`` task has the
  api-server plan its run for the run's recorded requester;
* ``GET .../controller_runs/{run_id}/work``: what a planned run does, from its backfill's record;
* ``POST .../controller_runs/{run_id}/chunks/{chunk}`` and ``GET .../chunks``: a ``trigger``
  task keeps what its chunk has acted on, and reads what the run's chunks have;
* ``POST .../controller_runs/{run_id}/report``: the ``report`` task keeps its part of the result
  (the head's also records how the backfill ended);
* ``POST .../controller_runs/{run_id}/refusal``: why a run got no work;
* ``POST /backfill-controller/api/dags/{dag_id}/dates``: a request's dates by the target's
  timetable (the scheduled catch-up uses it);
* ``GET /backfill-controller/api/controller_runs/{run_id}/paused``: whether the backfill is paused
  (:mod:`backfill_controller.server.actions`).

The Backfills page (:mod:`backfill_controller.server.ui`): the list, one backfill, the DAGs the
New backfill form offers, the page itself and its navigation icon. Operating a backfill
(:mod:`backfill_controller.server.actions`): pause, resume, cancel, re-run failed.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response

from backfill_controller.contract import CONTROLLER_DAG_ID
from backfill_controller.domain.controls import Control
from backfill_controller.domain.state import Phase
from backfill_controller.server import access, actions, admission, controller_runs, front_door, ui

app = FastAPI(title="Backfill Controller", description="Backfills any DAG with its own timetable.")

# The controller run must be readable; its target's runs are shown only if that DAG is readable too.
_READ_CONTROLLER_RUNS = Depends(
    requires_access_dag(method="GET", access_entity=DagAccessEntity.RUN, param_dag_id=CONTROLLER_DAG_ID)
)
_JSON_ONLY = Depends(access.json_only)
# First of a planning route's dependencies: its turn comes before anything else of it runs.
_PLANNING_TURN = Depends(admission.planning_turn)
Conf = Annotated[dict[str, Any], Body(description="The backfill_controller conf (see its Params).")]
Readable = Annotated[set[str], Depends(ui.readable_dag_ids)]


def _json(answer: dict[str, Any]) -> Response:
    """A large answer of JSON values (a dry run's dates, a run's work), encoded once with
    ``json.dumps`` instead of FastAPI's encoder, which walks every value first (15 ms of 720 dates)."""
    return Response(json.dumps(answer).encode(), media_type="application/json")


# --- the front door and the controller's own calls --------------------------------------------


@app.post("/api/backfills", status_code=201, dependencies=[_PLANNING_TURN, _JSON_ONLY])
def create_backfill(
    conf: Conf,
    user: GetUserDep,
    session: SessionDep,
    request: Request,
    run_id: Annotated[
        str | None,
        Query(max_length=250, pattern=r"^[A-Za-z0-9_.:+\-]+$", description="Run id (retries are idempotent)"),
    ] = None,
) -> dict[str, Any]:
    """Check a backfill request against its live target for the caller, then start it.

    With ``run_id``, a retry of a request that did create its run answers that run again.
    """
    return front_door.start_backfill(conf, user, session, request, run_id)


@app.post("/api/backfills/dry_run", dependencies=[_PLANNING_TURN, _JSON_ONLY])
def dry_run(conf: Conf, user: GetUserDep, session: SessionDep) -> Response:
    """What a backfill would do to each date, for the caller; creates and changes nothing.

    The answer is the report a dry run of the controller returns
    (:func:`backfill_controller.domain.report.build_report`): per date its logical date, data interval,
    action, why, and the task ids a task-subset backfill would clear.
    """
    return _json(front_door.dry_run(conf, user, session))


@app.post(
    "/api/controller_runs/{run_id}/plan", dependencies=[_PLANNING_TURN, _READ_CONTROLLER_RUNS, _JSON_ONLY]
)
def plan_controller_run(run_id: str, caller: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """Plan a controller run for its recorded requester and answer its work (the ``plan`` task's
    call; the controller's own account only).

    Answers ``{"status": "planned", "work": ...}`` (the backfill recorded, the run bound to it),
    ``{"status": "overlap", "message": ...}`` when a running backfill has some of its dates; 403,
    409 or 422 for a refused run, naming what is missing or wrong.
    """
    return controller_runs.plan_run(run_id, caller, session)


@app.get("/api/controller_runs/{run_id}/work", dependencies=[_READ_CONTROLLER_RUNS])
def controller_run_work(
    run_id: str,
    caller: GetUserDep,
    session: SessionDep,
    segment: Annotated[int | None, Query(ge=0, description="another segment's dates (head run)")] = None,
) -> Response:
    """What a controller run does, from its backfill's record: the request, its segment's dates,
    the target runs it acts on and how it feeds them (the controller's own account only; 404 for
    a run of no planned backfill, 409 for a run that is not the one its backfill was made with).
    Every task process of the controller asks for it."""
    return _json(controller_runs.run_work(run_id, caller, session, segment))


@app.post("/api/controller_runs/{run_id}/chunks/{chunk}", dependencies=[_READ_CONTROLLER_RUNS, _JSON_ONLY])
def keep_chunk(
    run_id: str, chunk: int, body: Annotated[Any, Body()], caller: GetUserDep, session: SessionDep
) -> dict[str, Any]:
    """Keep what one chunk of a running controller run has acted on (its ``trigger`` task's
    record; the controller's own account only): 422 naming what does not fit the run's work."""
    return controller_runs.keep_chunk(run_id, chunk, body, caller, session)


@app.get("/api/controller_runs/{run_id}/chunks", dependencies=[_READ_CONTROLLER_RUNS])
def controller_run_chunks(run_id: str, caller: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """What each chunk of a controller run has acted on, as kept (the controller's own account only)."""
    return controller_runs.run_chunks(run_id, caller, session)


@app.post("/api/controller_runs/{run_id}/report", dependencies=[_READ_CONTROLLER_RUNS, _JSON_ONLY])
def keep_report(
    run_id: str, body: Annotated[Any, Body()], caller: GetUserDep, session: SessionDep
) -> dict[str, Any]:
    """Keep a running controller run's part of the result (``{"report": {...}}``, its ``report``
    task's call; the controller's own account only); a head run's also records how the backfill
    ended (``settled``: its summary, or null while a date can still change)."""
    return controller_runs.keep_report(run_id, body, caller, session)


@app.post("/api/controller_runs/{run_id}/refusal", dependencies=[_READ_CONTROLLER_RUNS, _JSON_ONLY])
def keep_refusal(
    run_id: str, body: Annotated[Any, Body()], caller: GetUserDep, session: SessionDep
) -> dict[str, Any]:
    """Keep why a controller run got no work (``{"message": "..."}``), which the page shows (the
    controller's own account only; 409 for a run of a planned backfill)."""
    return controller_runs.keep_refusal(run_id, body, caller, session)


@app.post("/api/dags/{dag_id}/dates", dependencies=[Depends(requires_access_dag(method="GET"))])
def scheduled_dates(dag_id: str, body: dict[str, Any], session: SessionDep) -> dict[str, Any]:
    """The logical dates, run_after and data intervals a request covers, oldest first."""
    return controller_runs.scheduled_dates(dag_id, body, session)


# --- the Backfills page -------------------------------------------------------------------------

page = APIRouter(tags=["Backfills page"])


@page.get("/api/backfills", dependencies=[_READ_CONTROLLER_RUNS])
def list_backfills(
    session: SessionDep,
    user: GetUserDep,
    readable: Readable,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    dag_id: Annotated[str | None, Query(min_length=1, max_length=250, description="target DAG")] = None,
    state: Annotated[Phase | None, Query(description="the backfills in this phase")] = None,
) -> dict[str, Any]:
    """Every backfill (``backfill_controller`` run), newest first, summed up without its cells (live
    run states); only those of target ``dag_id`` and in phase ``state`` when given (``total``
    counts those; a phase is looked for among the newest 2,000 backfills that may be in it).

    A large backfill's continuation runs are folded into the run that received the request.
    Queries: the page of controller runs, then for each group of :data:`_GROUP` of them their
    ``plan`` XComs, their continuation runs and XComs, the ``trigger`` task states, then per
    backfill its target runs (run_id IN, batched) and, for a running one none of whose runs has
    finished, the target's latest run durations; with ``state``, first what decides the phase of
    every candidate (see the module's docstring).
    """
    return ui.backfill_list(session, user, readable, limit=limit, offset=offset, dag_id=dag_id, state=state)


@page.get("/api/backfills/{run_id}", dependencies=[_READ_CONTROLLER_RUNS])
def get_backfill(
    run_id: str,
    session: SessionDep,
    user: GetUserDep,
    readable: Readable,
    cells_offset: Annotated[int, Query(ge=0, description="first date's cell to answer, in date order")] = 0,
    cells_limit: Annotated[
        int, Query(ge=1, le=ui.CELLS_PAGE, description="most cells to answer (a page of dates)")
    ] = ui.CELLS_PAGE,
) -> dict[str, Any]:
    """One backfill, as :func:`list_backfills` sums it up, with a cell per date, a page at a time
    (``cells_total`` counts them all); 404 for a run that is not one."""
    return ui.backfill_detail(
        run_id, session, user, readable, cells_offset=cells_offset, cells_limit=cells_limit
    )


@page.get("/api/backfillable_dags", dependencies=[_READ_CONTROLLER_RUNS])
def backfillable_dags(session: SessionDep, user: GetUserDep, readable: Readable) -> dict[str, Any]:
    """The DAGs the caller may start a backfill of (the New backfill form's choices), by dag_id:
    active and not paused, readable, with POST on their runs, and allowed by ``[backfill_controller]
    allowed_dags`` and ``denied_dags``; at most :data:`_MOST_TARGETS`."""
    return ui.backfillable(session, user, readable)


@page.get("/ui", response_class=HTMLResponse, dependencies=[_READ_CONTROLLER_RUNS])
def backfills_page() -> HTMLResponse:
    """The Backfills page; it loads ``api/backfills`` (relative to itself) in the browser."""
    return ui.page()


@page.get("/icon.svg", include_in_schema=False)
def nav_icon(dark: bool = False) -> Response:
    """The navigation icon: a small calendar grid (public, like the UI's own static files)."""
    return ui.icon(dark)


# --- operating a backfill -----------------------------------------------------------------------

controls = APIRouter(tags=["Operate a backfill"])


@controls.post("/api/backfills/{run_id}/pause", dependencies=[_READ_CONTROLLER_RUNS, _JSON_ONLY])
def pause(run_id: str, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """No new date starts; runs already queued or running finish. Time paused does not count
    against the backfill's ``timeout_minutes``."""
    return actions.switch(Control.PAUSE, run_id, user, session)


@controls.post("/api/backfills/{run_id}/resume", dependencies=[_READ_CONTROLLER_RUNS, _JSON_ONLY])
def resume(run_id: str, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """Dates start again where the backfill stopped."""
    return actions.switch(Control.RESUME, run_id, user, session)


@controls.post("/api/backfills/{run_id}/cancel", dependencies=[_READ_CONTROLLER_RUNS, _JSON_ONLY])
def cancel(run_id: str, user: GetUserDep, session: SessionDep) -> dict[str, Any]:
    """As marking the controller run failed: nothing new starts, in any segment; its queued target
    runs are marked failed; runs already running finish."""
    return actions.cancel(run_id, user, session)


@controls.post(
    "/api/backfills/{run_id}/rerun_failed",
    status_code=201,
    dependencies=[_PLANNING_TURN, _READ_CONTROLLER_RUNS, _JSON_ONLY],
)
def rerun_failed(run_id: str, user: GetUserDep, session: SessionDep, request: Request) -> dict[str, Any]:
    """Start a new backfill of exactly the dates that ended failed (same target, task selection and
    conf; ``reprocess: failed``); answers as the front door does, with the new run id."""
    return actions.rerun_failed(run_id, user, session, request)


@controls.get("/api/controller_runs/{run_id}/paused", dependencies=[_READ_CONTROLLER_RUNS])
def paused_for(run_id: str, session: SessionDep, caller: GetUserDep) -> dict[str, Any]:
    """Whether the backfill of a controller run (head or continuation) is paused, and how long it
    has been paused in all: the ``trigger`` task asks before it starts a date, and moves its
    deadline by that long (the controller's own account only)."""
    access.require_service_account(caller)
    return actions.paused_for(run_id, session)


app.include_router(page)
app.include_router(controls)
