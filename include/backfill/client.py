"""The few REST API calls the ``backfill`` command makes (:mod:`include.backfill.cli`).

Plain ``requests``, no Airflow import, so the command starts fast. The password is sent only in
the body of ``POST /auth/token``; the token it returns is renewed once when a call answers 401
(a long backfill can outlive it). Messages never contain the password or the token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

PAGE_SIZE = 100
#: The plugin's front door (``include/controller/web.py``).
FRONT_DOOR = "/backfill-controller"
TIMEOUT = 30.0
#: Answers that mean "try again": gateway trouble, and SQLite's "database is locked" (503).
TRANSIENT_STATUS = frozenset({502, 503, 504})
RETRIES = 5
RETRY_DELAY = 2.0


class ApiError(RuntimeError):
    """A call failed. ``transient`` errors (connection trouble, 502/503/504) may pass if retried."""

    def __init__(self, message: str, status: int | None = None, *, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


def _unreachable(base_url: str, exc: requests.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.Timeout):
        return f"Airflow at {base_url} did not answer within {timeout:g} s"
    return f"cannot reach Airflow at {base_url} ({type(exc).__name__})"


class RequestRefused(ApiError):
    """Airflow refused to start the run (HTTP 400/422: the conf fails the controller's Params)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}", status)
        self.detail = detail


def error_detail(response: requests.Response) -> str:
    """FastAPI's ``detail`` as readable text: a message, or one line per validation error."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:2000] or response.reason
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict) and "message" in detail:  # the front door's answers
        return str(detail["message"])
    if isinstance(detail, list):
        lines = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                lines.append(f"{where}: {item.get('msg', item)}" if where else str(item.get("msg", item)))
            else:
                lines.append(str(item))
        return "\n".join(lines)
    return str(detail)


class ControllerApi:
    """Trigger the controller and watch it: run state, task instances, XComs, the target's runs."""

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = TIMEOUT,
        log: Callable[[str], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._timeout = timeout
        self._log = log
        self._session = session or requests.Session()

    # ------------------------------------------------------------------ plumbing
    def login(self) -> None:
        """Exchange the credentials for a JWT. Raises ApiError (not transient) if refused."""
        url = f"{self.base_url}/auth/token"
        try:
            response = self._session.post(
                url, json={"username": self._username, "password": self._password}, timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise ApiError(_unreachable(self.base_url, exc, self._timeout), transient=True) from None
        self._trace("POST", "/auth/token", response.status_code)
        if response.status_code not in (200, 201):
            raise ApiError(
                f"Airflow at {self.base_url} refused the login of {self._username!r} "
                f"(HTTP {response.status_code}); check the user name and password",
                response.status_code,
            )
        token = response.json().get("access_token")
        if not token:
            raise ApiError(f"POST {url} returned no access_token", response.status_code)
        self._session.headers["Authorization"] = f"Bearer {token}"

    def _trace(self, method: str, path: str, status: int | str) -> None:
        if self._log is not None:
            self._log(f"{method} {path} -> {status}")

    def _call(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> requests.Response:
        """One call; a 401 logs in again once; transient trouble is retried when ``retry``."""
        if "Authorization" not in self._session.headers:
            self.login()
        attempts = RETRIES if retry else 1
        renewed = False
        for attempt in range(1, attempts + 1):
            try:
                response = self._session.request(
                    method, f"{self.base_url}{path}", timeout=self._timeout, **kwargs
                )
            except requests.RequestException as exc:
                self._trace(method, path, type(exc).__name__)
                if attempt == attempts:
                    raise ApiError(
                        f"{method} {path}: {_unreachable(self.base_url, exc, self._timeout)}", transient=True
                    ) from None
                time.sleep(RETRY_DELAY * attempt)
                continue
            self._trace(method, path, response.status_code)
            if response.status_code == 401 and not renewed:
                renewed = True
                self.login()
                response = self._session.request(
                    method, f"{self.base_url}{path}", timeout=self._timeout, **kwargs
                )
                self._trace(method, path, response.status_code)
            if response.status_code in TRANSIENT_STATUS and attempt < attempts:
                time.sleep(RETRY_DELAY * attempt)
                continue
            return response
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError(
                f"{method} {path} -> HTTP {response.status_code}: {error_detail(response)}",
                response.status_code,
                transient=response.status_code in TRANSIENT_STATUS,
            )
        return response.json()

    def _pages(self, path: str, key: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self._json("GET", path, params={**params, "limit": PAGE_SIZE, "offset": offset})
            items = page.get(key) or []
            yield from items
            offset += len(items)
            if not items or offset >= int(page.get("total_entries", 0)):
                return

    # ------------------------------------------------------------------ calls
    def start_backfill(self, conf: Mapping[str, Any]) -> str:
        """Start a backfill through the front door; its controller run_id. Raises RequestRefused
        (HTTP 403, 409, 422) with every problem the api-server found, nothing started.

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
        path = FRONT_DOOR + path
        response = None
        for attempt in range(1, RETRIES + 1):
            try:
                response = self._call("POST", path, retry=False, json=dict(conf), **kwargs)
            except ApiError as exc:
                if not exc.transient or attempt == RETRIES:
                    raise
                time.sleep(RETRY_DELAY * attempt)
                continue
            if response.status_code not in (500, *TRANSIENT_STATUS):
                break
            time.sleep(RETRY_DELAY * attempt)
        assert response is not None
        if response.status_code in (400, 403, 409, 422):
            raise RequestRefused(response.status_code, error_detail(response))
        if response.status_code == 404:
            raise ApiError(
                f"{self.base_url} has no Backfill Controller ({path} not found): is its plugin deployed?", 404
            )
        if response.status_code >= 400:
            raise ApiError(
                f"POST {path} -> HTTP {response.status_code}: {error_detail(response)}", response.status_code
            )
        return response.json()

    def run_state(self, dag_id: str, run_id: str) -> str:
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
        return str(self._json("GET", path)["state"])

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """Every task instance of one run (of one task, if ``task_id``), mapped ones included."""
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        params = {"task_id": task_id} if task_id else {}
        return list(self._pages(path, "task_instances", params))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        """An XCom's value as stored (an object, or JSON text); None while there is none."""
        path = (
            f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
            f"/taskInstances/{quote(task_id, safe='')}/xcomEntries/{quote(key, safe='')}"
        )
        response = self._call("GET", path, params={"map_index": map_index})
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ApiError(
                f"GET {path} -> HTTP {response.status_code}: {error_detail(response)}",
                response.status_code,
                transient=response.status_code in TRANSIENT_STATUS,
            )
        return response.json().get("value")

    def backfill(self, run_id: str) -> dict[str, Any]:
        """One backfill as the Backfills page shows it: phase, counts and one cell per date."""
        return dict(self._json("GET", f"{FRONT_DOOR}/api/backfills/{quote(run_id, safe='')}"))

    def control(self, run_id: str, control: str) -> dict[str, Any]:
        """Apply a control (pause, resume, cancel, rerun_failed) to a backfill: the backfill as it
        is now (``rerun_failed``: the new backfill). Raises ApiError (403, 404, 409) when refused.
        Not retried: a control applied twice is refused the second time."""
        path = f"{FRONT_DOOR}/api/backfills/{quote(run_id, safe='')}/{quote(control, safe='')}"
        return dict(self._json("POST", path, retry=False, json={}))

    def backfills(
        self, dag_id: str | None = None, state: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        """One page of backfills, newest first, as the Backfills page lists them: ``total`` (of those
        the filters keep) and ``backfills``. ``dag_id``: of that target DAG only; ``state``: in that
        phase only (:class:`include.backfill.state.Phase`)."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if dag_id is not None:
            params["dag_id"] = dag_id
        if state is not None:
            params["state"] = state
        return dict(self._json("GET", f"{FRONT_DOOR}/api/backfills", params=params))

    def dag_runs(self, dag_id: str, first: str, last: str) -> list[dict[str, Any]]:
        """The runs of ``dag_id`` with logical dates in ``[first, last]`` (ISO-8601), 100 per call."""
        path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns"
        params = {"logical_date_gte": first, "logical_date_lte": last, "order_by": "logical_date"}
        return list(self._pages(path, "dag_runs", params))
