"""The calls the ``backfill`` command makes (:mod:`backfill_controller.cli`): the controller's front
door, its backfills and controls, and Airflow's runs, task instances and XComs to follow a run.

The login is tried once, so the command says at once when Airflow cannot be reached; every other
call is retried through transient trouble (:data:`backfill_controller.client.rest.TRANSIENT_STATUS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from backfill_controller.client.rest import (
    TRANSIENT_OR_DATABASE_ERROR,
    ApiError,
    RequestRefused,
    RestClient,
    error_detail,
    quote_id,
    raise_for,
)
from backfill_controller.contract import URL_PREFIX


class ControllerApi(RestClient):
    """Trigger the controller and watch it: run state, task instances, XComs, the target's runs."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        log: Callable[[str], None] | None = None,
        session: requests.Session | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("login_attempts", 1)
        super().__init__(base_url, username, password, log=log, session=session, **options)

    def start_backfill(self, conf: Mapping[str, Any]) -> str:
        """Start a backfill through the front door; its controller run_id. Raises RequestRefused
        (HTTP 400, 403, 409, 422) with every problem the api-server found, nothing started.

        The run_id is chosen here (``manual__<now>``, as Airflow would), so a call that failed on
        the way (connection error; HTTP 500 "Database error" when SQLite is locked; 502-504) is
        retried safely: the front door answers a retry with the run the earlier attempt created.
        """
        run_id = f"manual__{datetime.now(UTC).isoformat()}"
        body = self._front_door("/api/backfills", conf, params={"run_id": run_id})
        return str(body["dag_run_id"])

    def dry_run(self, conf: Mapping[str, Any]) -> dict[str, Any]:
        """What the backfill would do to each date (the controller's dry-run report); changes nothing."""
        return dict(self._front_door("/api/backfills/dry_run", conf))

    def _front_door(self, path: str, conf: Mapping[str, Any], **kwargs: Any) -> Any:
        path = URL_PREFIX + path
        response = self.request("POST", path, json=dict(conf), retry_on=TRANSIENT_OR_DATABASE_ERROR, **kwargs)
        if response.status_code in (400, 403, 409, 422):
            raise RequestRefused(response.status_code, error_detail(response), response=response)
        if response.status_code == 404:
            raise ApiError(
                404,
                error_detail(response),
                message=(
                    f"{self.base_url} has no Backfill Controller ({path} not found): is its plugin deployed?"
                ),
                response=response,
            )
        raise_for(response, f"POST {path}")
        return response.json()

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.call("GET", f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}")["state"])

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """Every task instance of one run (of one task, if ``task_id``), mapped ones included."""
        path = f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}/taskInstances"
        return list(self.pages(path, "task_instances", {"task_id": task_id} if task_id else {}))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        """An XCom's value as stored (an object, or JSON text); None while there is none."""
        path = (
            f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}"
            f"/taskInstances/{quote_id(task_id)}/xcomEntries/{quote_id(key)}"
        )
        entry = self.call("GET", path, missing_ok=True, params={"map_index": map_index})
        return None if entry is None else entry.get("value")

    def backfill(self, run_id: str) -> dict[str, Any]:
        """One backfill as the Backfills page shows it: phase, counts and one cell per date."""
        return dict(self.call("GET", f"{URL_PREFIX}/api/backfills/{quote_id(run_id)}"))

    def control(self, run_id: str, control: str) -> dict[str, Any]:
        """Apply a control (pause, resume, cancel, rerun_failed) to a backfill: the backfill as it
        is now (``rerun_failed``: the new backfill). Raises ApiError (403, 404, 409) when refused.
        Not retried: a control applied twice is refused the second time."""
        path = f"{URL_PREFIX}/api/backfills/{quote_id(run_id)}/{quote_id(control)}"
        return dict(self.call("POST", path, attempts=1, json={}))

    def backfills(
        self, dag_id: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        """One page of backfills, newest first, as the Backfills page lists them: ``total`` (of those
        the filters keep) and ``backfills``. ``dag_id``: of that target DAG only; ``state``: in that
        phase only (:class:`backfill_controller.domain.state.Phase`)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if dag_id is not None:
            params["dag_id"] = dag_id
        if state is not None:
            params["state"] = state
        return dict(self.call("GET", f"{URL_PREFIX}/api/backfills", params=params))

    def dag_runs(self, dag_id: str, first: str, last: str) -> list[dict[str, Any]]:
        """The runs of ``dag_id`` with logical dates in ``[first, last]`` (ISO-8601), 100 per call."""
        params = {"logical_date_gte": first, "logical_date_lte": last, "order_by": "logical_date"}
        return list(self.pages(f"/api/v2/dags/{quote_id(dag_id)}/dagRuns", "dag_runs", params))
