"""DAGs, runs, task states and XComs of a local Airflow, read and made through its public REST API
with :class:`backfill_controller.client.rest.RestClient` (the product's own transport): ``rest``, as
the admin."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import requests

from backfill_controller.client.rest import TRANSIENT_OR_DATABASE_ERROR, RestClient, quote_id, raise_for

FINAL_RUN_STATES = frozenset({"success", "failed"})


class RunsMixin:
    """Calls the public REST API of the instance at ``url`` as its admin (or with a given token).

    Calls are not retried unless they say so: the tests read Airflow's answers as they come. Errors
    are :class:`backfill_controller.client.rest.ApiError`."""

    url: str
    rest: RestClient
    _running: bool

    if TYPE_CHECKING:  # from ServicesMixin

        def check_alive(self) -> None: ...

        def log_tail(self, service: str, n: int = 50) -> str: ...

    def token_for(self, username: str, password: str) -> str:
        """A JWT of the public REST API for this user (POST /auth/token; both auth managers take a
        JSON body with username and password). Raises ApiError if the login is refused."""
        return self.rest.token_for(username, password)

    def token(self, refresh: bool = False) -> str:
        """The admin's JWT for the public REST API."""
        return self.rest.token(refresh)

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        """Call the REST API with a bearer token: ``token`` if given (e.g. from ``token_for``), else
        the admin's (renewed once on HTTP 401); ``path`` like "/api/v2/dags", ids quoted. Airflow's
        answer whatever its status; ``retry_on``/``attempts`` as :meth:`RestClient.request`."""
        if self._running:
            self.check_alive()  # every call also supervises: a dead service is restarted at once
        return self.rest.request(method, path, token=token, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.api(method, path, **kwargs)
        raise_for(resp, f"{method} {path}")
        return resp.json()

    def import_errors(self) -> list[dict[str, Any]]:
        """DAG import errors plus plugin import errors (as dicts with filename and stack_trace/error)."""
        errors = list(self._json("GET", "/api/v2/importErrors", params={"limit": 100})["import_errors"])
        plugins = self.api("GET", "/api/v2/plugins/importErrors")
        if plugins.status_code == 200:
            errors += plugins.json().get("import_errors", [])
        return errors

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 120) -> None:
        """Wait until each DAG is known to the API server, not stale and without import errors."""
        pending = set(dag_ids)
        deadline = time.monotonic() + timeout
        while pending:
            self.check_alive()
            for dag_id in sorted(pending):
                resp = self.api("GET", f"/api/v2/dags/{quote_id(dag_id)}")
                if resp.status_code == 200:
                    dag = resp.json()
                    if not dag.get("has_import_errors") and not dag.get("is_stale"):
                        pending.discard(dag_id)
            if not pending:
                return
            if time.monotonic() > deadline:
                details = "\n".join(
                    f"--- {e.get('filename') or e.get('source')}\n{e.get('stack_trace') or e.get('error')}"
                    for e in self.import_errors()
                )
                raise TimeoutError(
                    f"DAGs not loaded after {timeout:.0f}s: {sorted(pending)}\n"
                    f"import errors:\n{details or '(none)'}\n"
                    f"dag-processor log:\n{self.log_tail('dag-processor', 20)}"
                )
            time.sleep(2)

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        """Trigger a manual run (logical_date null) and return its run_id. Raises ApiError on 4xx/5xx."""
        resp = self.post_run(dag_id, conf or {}, run_id)
        raise_for(resp, f"trigger {dag_id}")
        return str(resp.json()["dag_run_id"])

    def post_run(
        self, dag_id: str, conf: dict[str, Any], run_id: str | None = None, *, token: str | None = None
    ) -> requests.Response:
        """Ask Airflow for a manual run as ``token``'s user (default: the admin); Airflow's answer.

        Retried while SQLite is locked: that surfaces as HTTP 500 "Database error" or 503, and
        Airflow rolled the request back, so nothing was created.
        """
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        path = f"/api/v2/dags/{quote_id(dag_id)}/dagRuns"
        return self.api(
            "POST", path, json=body, token=token, retry_on=TRANSIENT_OR_DATABASE_ERROR, attempts=5
        )

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause ``dag_id`` as the admin; retried while SQLite is locked (HTTP 500
        "Database error" or 503: Airflow rolled back, and the PATCH is idempotent)."""
        resp = self.api(
            "PATCH",
            f"/api/v2/dags/{quote_id(dag_id)}",
            json={"is_paused": paused},
            retry_on=TRANSIENT_OR_DATABASE_ERROR,
            attempts=5,
        )
        raise_for(resp, f"{'pause' if paused else 'unpause'} {dag_id}")

    def mark_failed(self, dag_id: str, run_id: str) -> None:
        """Mark run ``run_id`` of ``dag_id`` failed as the admin (the UI's "Mark as failed");
        retried while SQLite is locked, as :meth:`set_paused` is."""
        resp = self.api(
            "PATCH",
            f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}",
            json={"state": "failed"},
            retry_on=TRANSIENT_OR_DATABASE_ERROR,
            attempts=5,
        )
        raise_for(resp, f"mark {dag_id} {run_id} failed")

    def dag_runs(self, dag_id: str, first_day: str, last_day: str, **params: Any) -> list[dict[str, Any]]:
        """Every run of ``dag_id`` with a logical date on ``first_day`` .. ``last_day`` (YYYY-MM-DD,
        inclusive, UTC), all pages of 100; ``params`` add REST filters."""
        runs: list[dict[str, Any]] = []
        window = {"logical_date_gte": f"{first_day}T00:00:00Z", "logical_date_lte": f"{last_day}T23:59:59Z"}
        while True:
            page = self._json(
                "GET",
                f"/api/v2/dags/{quote_id(dag_id)}/dagRuns",
                params={**window, **params, "limit": 100, "offset": len(runs)},
            )
            runs += page["dag_runs"]
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                return runs

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self._json("GET", f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}")["state"])

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """{task_id or task_id[map_index]: state} for one run."""
        data = self._json(
            "GET",
            f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}/taskInstances",
            params={"limit": 100},
        )
        states: dict[str, str | None] = {}
        for ti in data["task_instances"]:
            key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            states[key] = ti["state"]
        return states

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Wait for a run to reach success or failed and return that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run_state(dag_id, run_id)
            if state in FINAL_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {dag_id}/{run_id} still {state} after {timeout:.0f}s; "
                    f"tasks: {self.task_states(dag_id, run_id)}"
                )
            self.check_alive()
            time.sleep(1)

    def _xcom_entries(self, dag_id: str, run_id: str, task_id: str) -> str:
        run = f"/api/v2/dags/{quote_id(dag_id)}/dagRuns/{quote_id(run_id)}"
        return f"{run}/taskInstances/{quote_id(task_id)}/xcomEntries"

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """The XCom value as JSON data (raises ApiError 404 if there is none)."""
        path = f"{self._xcom_entries(dag_id, run_id, task_id)}/{quote_id(key)}"
        value = self._json("GET", path, params={"map_index": map_index})["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def xcom_sizes(self, dag_id: str, run_id: str, task_ids: Iterable[str]) -> dict[str, int]:
        """``{task_id.key: bytes of its JSON value}`` for every XCom of these tasks of one run."""
        sizes = {}
        for task_id in task_ids:
            path = self._xcom_entries(dag_id, run_id, task_id)
            for entry in self._json("GET", path, params={"limit": 100})["xcom_entries"]:
                value = self.xcom(dag_id, run_id, task_id, key=entry["key"])
                sizes[f"{task_id}.{entry['key']}"] = len(json.dumps(value))
        return sizes
