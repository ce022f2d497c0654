"""The public REST API, as the controller's tasks use it (a task has no database access).

Base URL and credentials come only from an Airflow connection (default ``airflow_api``, e.g.
``AIRFLOW_CONN_AIRFLOW_API=http://admin:secret@localhost:8080``). The password is exchanged for a
JWT at ``POST /auth/token`` and never logged. Calls go through one ``requests`` session (connection
reuse, bounded retries). Not through the official ``apache-airflow-client``: importing it loads a
model class for every endpoint, 0.8 s of CPU in each task process that used it, the plan task's
included, before a backfill's first run (measured with ``python -X importtime``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from urllib3.util.retry import Retry

from include.backfill.airflow_states import OPEN_RUN
from include.backfill.plan import ExistingRun
from include.backfill.request import parse_datetime
from include.backfill.schedule import ScheduledDate
from include.backfill.segments import SEGMENT_MARK
from include.backfill.settings import api_conn_id

log = logging.getLogger(__name__)

PAGE_SIZE = 100
PLUGIN_PREFIX = "/backfill-controller"
_TIMEOUT = 30


class ApiError(RuntimeError):
    """The REST API refused a call; ``status`` is its HTTP status, ``detail`` its explanation."""

    def __init__(self, status: int, detail: Any):
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {detail}")


@dataclass(frozen=True)
class TargetDag:
    dag_id: str
    is_paused: bool
    timetable_summary: str | None
    params: dict[str, Any]
    task_ids: tuple[str, ...] = ()
    max_active_runs: int | None = None


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.mount("http", requests.adapters.HTTPAdapter(max_retries=_retry()))
        response = self._session.post(
            f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=_TIMEOUT
        )
        if response.status_code not in (200, 201):
            raise ApiError(response.status_code, f"could not log in to {self.base_url} as {username!r}")
        token = response.json()["access_token"]
        self._session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_connection(cls, conn_id: str | None = None) -> AirflowApi:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id or api_conn_id())
        scheme = "https" if "https" in ((conn.conn_type or "").lower(), conn.schema) else "http"
        host = conn.host or "localhost"
        base = host if "://" in host else f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        return cls(base, conn.login or "", conn.password or "")

    def get_dag(self, dag_id: str) -> TargetDag | None:
        """The target DAG, or None if Airflow does not know it."""
        response = self._session.get(f"{self.base_url}/api/v2/dags/{dag_id}/details", timeout=_TIMEOUT)
        if response.status_code == 404:
            return None
        _raise_for(response)
        body = response.json()
        return TargetDag(
            dag_id=body["dag_id"],
            is_paused=bool(body.get("is_paused")),
            timetable_summary=body.get("timetable_summary"),
            params=body.get("params") or {},
            max_active_runs=body.get("max_active_runs"),
        )

    def plan_run(self, controller_run_id: str) -> dict[str, Any]:
        """Have the api-server plan a controller run for its requester (``include/controller/web.py``)."""
        response = self._session.post(
            f"{self.base_url}{PLUGIN_PREFIX}/api/controller_runs/{quote(controller_run_id, safe='')}/plan",
            timeout=300,
        )
        _raise_for(response)
        return dict(response.json())

    def paused(self, controller_run_id: str) -> dict[str, Any]:
        """``{"paused": bool, "paused_seconds": float}`` of a controller run's backfill
        (``include/controller/actions.py``)."""
        response = self._session.get(
            f"{self.base_url}{PLUGIN_PREFIX}/api/controller_runs/{quote(controller_run_id, safe='')}/paused",
            timeout=_TIMEOUT,
        )
        _raise_for(response)
        return dict(response.json())

    def settle(self, controller_run_id: str) -> dict[str, Any]:
        """Have the api-server record how a backfill ended (``include/controller/ui.py``)."""
        response = self._session.post(
            f"{self.base_url}{PLUGIN_PREFIX}/api/controller_runs/{quote(controller_run_id, safe='')}/outcome",
            timeout=300,
        )
        _raise_for(response)
        return dict(response.json())

    def expand_dates(self, dag_id: str, request_conf: dict[str, Any]) -> list[ScheduledDate]:
        """The target's logical dates for a request, from the plugin (which reads its timetable)."""
        response = self._session.post(
            f"{self.base_url}{PLUGIN_PREFIX}/api/dags/{dag_id}/dates", json=request_conf, timeout=120
        )
        _raise_for(response)
        return [ScheduledDate.from_dict(d) for d in response.json()["dates"]]

    def iter_runs(self, dag_id: str, first: datetime, last: datetime) -> Iterator[ExistingRun]:
        """Every run of ``dag_id`` with a logical date in ``[first, last]``, page by page."""
        window = {
            "logical_date_gte": first.isoformat(),
            "logical_date_lte": last.isoformat(),
            "order_by": "logical_date",
        }
        for run in self._dag_runs(dag_id, window):
            if run.get("logical_date"):
                yield ExistingRun(
                    run["dag_run_id"],
                    run["state"],
                    parse_datetime(run["logical_date"]),
                    _utc_iso(run.get("end_date")),
                )

    def _dag_runs(self, dag_id: str, params: Mapping[str, str | list[str]]) -> Iterator[dict[str, Any]]:
        """``GET /api/v2/dags/{dag_id}/dagRuns`` with ``params``, every page of :data:`PAGE_SIZE`."""
        offset = 0
        while True:
            query: dict[str, str | int | list[str]] = {**params, "limit": PAGE_SIZE, "offset": offset}
            response = self._session.get(
                f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns", params=query, timeout=_TIMEOUT
            )
            _raise_for(response)
            page = response.json()
            yield from page["dag_runs"]
            offset += len(page["dag_runs"])
            if not page["dag_runs"] or offset >= page["total_entries"]:
                return

    def clear_task_instances(self, dag_id: str, run_id: str, task_ids: Sequence[Any]) -> list[str]:
        """Clear exactly these task instances of one run, so the scheduler runs them again."""
        response = self._session.post(
            f"{self.base_url}/api/v2/dags/{dag_id}/clearTaskInstances",
            json={
                "dry_run": False,
                "dag_run_id": run_id,
                "task_ids": list(task_ids),
                "only_failed": False,
                "reset_dag_runs": True,
                "include_upstream": False,
                "include_downstream": False,
            },
            timeout=_TIMEOUT,
        )
        _raise_for(response)
        return [f"{t['task_id']}[{t['map_index']}]" for t in response.json()["task_instances"]]

    def _open_head_runs(self, controller_dag_id: str) -> list[dict[str, Any]]:
        """The controller's head runs (not continuations) still queued or running."""
        runs = self._dag_runs(controller_dag_id, {"state": sorted(OPEN_RUN)})
        return [run for run in runs if SEGMENT_MARK not in run["dag_run_id"]]

    def open_backfill_targets(self, controller_dag_id: str) -> dict[str, str]:
        """``{run_id: target dag_id}`` of the controller runs still queued or running (head runs)."""
        return {
            run["dag_run_id"]: str((run.get("conf") or {}).get("dag_id"))
            for run in self._open_head_runs(controller_dag_id)
        }

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> bool:
        """Create run ``run_id`` of ``dag_id`` with ``conf``; False if a run with that id exists."""
        response = self._session.post(
            f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf},
            timeout=_TIMEOUT,
        )
        if response.status_code == 409:
            return False
        _raise_for(response)
        return True

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        response = self._session.patch(
            f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}",
            params={"update_mask": "note"},
            json={"note": note[:1000]},
            timeout=_TIMEOUT,
        )
        _raise_for(response)


def _utc_iso(value: str | None) -> str | None:
    return parse_datetime(value).isoformat() if value else None


def _retry() -> Retry:
    # The api-server may restart, or SQLite be locked ("Database error", HTTP 500, rolled back):
    # retry with backoff, bounded (about a minute in all).
    return Retry(
        total=8,
        backoff_factor=0.5,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=None,
        raise_on_status=False,
    )


def _raise_for(response: requests.Response) -> None:
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ApiError(response.status_code, detail)
