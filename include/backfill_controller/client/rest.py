"""The transport every REST call of the product goes through: one ``requests`` session per client.

:class:`RestClient` owns the base URL, the JWT login (``POST {base}/auth/token`` with a JSON body
of username and password; the token is renewed once when a call answers 401), the timeouts, the
bounded retries of transient answers, and the errors (:class:`ApiError`, with the detail Airflow's
JSON answer gives, see :func:`error_detail`). Redirects are never followed: a 3xx is an
:class:`ApiError`, so the credentials go to the configured URL only. Ids in paths go through
:func:`quote_id`. Messages never contain the password or the token.

No Airflow import here (``from_connection`` imports it when called): the ``backfill`` command
starts fast and a task pays only for ``requests``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, Self
from urllib.parse import quote

import requests

TIMEOUT = 30.0
#: Answers that mean "try again": gateway trouble, and SQLite's "database is locked" (503).
TRANSIENT_STATUS = frozenset({502, 503, 504})
#: :data:`TRANSIENT_STATUS` and HTTP 500, for calls that are safe to repeat after a 500: SQLite's
#: "database is locked" also surfaces as 500 "Database error", and Airflow rolled the request back.
TRANSIENT_OR_DATABASE_ERROR = TRANSIENT_STATUS | {500}
#: Tries of one call (the first included); the n-th retry waits ``n × RETRY_DELAY`` seconds.
ATTEMPTS = 5
RETRY_DELAY = 2.0
PAGE_SIZE = 100


class ApiError(RuntimeError):
    """A call failed. ``status``: the HTTP status (None when Airflow could not be reached);
    ``detail``: the answer's explanation (:func:`error_detail`); ``transient``: connection trouble
    or a gateway/locked-database answer (:data:`TRANSIENT_STATUS`), which may pass if retried;
    ``response``: the answer, when there was one."""

    def __init__(
        self,
        status: int | None,
        detail: str,
        *,
        call: str | None = None,
        message: str | None = None,
        response: requests.Response | None = None,
    ) -> None:
        if message is None:
            answer = detail if status is None else f"HTTP {status}: {detail}"
            message = f"{call}{': ' if status is None else ' -> '}{answer}" if call else answer
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.transient = status is None or status in TRANSIENT_STATUS
        self.response = response


class RequestRefused(ApiError):
    """Airflow refused to start the run (HTTP 400/403/409/422: the conf fails the controller's
    checks, the user may not, or the dates overlap another backfill); nothing was started."""


def quote_id(value: str) -> str:
    """An id (dag_id, run_id, task_id, XCom key) as one path segment: ``/`` and spaces quoted.

    ``.`` and ``..`` (valid run ids in Airflow) are quoted too: as they are, a URL would resolve
    them as "this folder" and "the folder above" (urllib3 removes such segments).

    >>> quote_id("scheduled__2024-01-01T00:00:00+00:00/x y")
    'scheduled__2024-01-01T00%3A00%3A00%2B00%3A00%2Fx%20y'
    >>> quote_id(".."), quote_id("a..b")
    ('%2E%2E', 'a..b')
    """
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")


def error_detail(response: requests.Response) -> str:
    """FastAPI's ``detail`` as readable text: a message, or one line per validation error."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:2000] or response.reason
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict) and "message" in detail:  # the controller's endpoints
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


def raise_for(response: requests.Response, call: str) -> None:
    """Raise :class:`ApiError` naming ``call`` (e.g. ``"GET /api/v2/dags"``) for a 4xx/5xx answer."""
    if response.status_code >= 400:
        raise ApiError(response.status_code, error_detail(response), call=call, response=response)


#: Longest ``Retry-After`` the client waits for; a longer one is cut to it.
MOST_RETRY_AFTER = 120.0


def retry_after(response: requests.Response) -> float | None:
    """Seconds an answer asks the caller to wait before asking again (``Retry-After`` in seconds,
    at most :data:`MOST_RETRY_AFTER`), or None when it asks nothing readable.

    >>> answer = requests.Response(); answer.headers["Retry-After"] = "7"
    >>> retry_after(answer)
    7.0
    """
    text = response.headers.get("Retry-After", "")
    try:
        seconds = float(text)
    except ValueError:
        return None
    return min(max(0.0, seconds), MOST_RETRY_AFTER)


class RestClient:
    """Calls the REST API at ``base_url`` as ``username``.

    ``retry_on``: the statuses retried by default, at most ``attempts`` tries in all (connection
    trouble too); a call may ask for others (:meth:`request`). The login is tried
    ``login_attempts`` times (default: ``attempts``). ``log`` receives one line per
    answer (``"GET /path -> 200"``). ``session``: a ``requests.Session`` (a new one by default).
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = TIMEOUT,
        attempts: int = ATTEMPTS,
        retry_on: Collection[int] = TRANSIENT_STATUS,
        retry_delay: float = RETRY_DELAY,
        login_attempts: int | None = None,
        log: Callable[[str], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.retry_on = frozenset(retry_on)
        self.retry_delay = retry_delay
        self.login_attempts = self.attempts if login_attempts is None else max(1, login_attempts)
        self._log = log
        self._session = session or requests.Session()

    @classmethod
    def from_connection(cls, conn_id: str | None = None, **kwargs: Any) -> Self:
        """A client for the Airflow connection ``conn_id`` (default: ``api_conn_id``), e.g.
        ``AIRFLOW_CONN_AIRFLOW_API=http://admin:secret@localhost:8080``. Imports Airflow."""
        from airflow.sdk import BaseHook

        from backfill_controller.domain.settings import api_conn_id

        conn = BaseHook.get_connection(conn_id or api_conn_id())
        scheme = "https" if "https" in ((conn.conn_type or "").lower(), conn.schema) else "http"
        host = conn.host or "localhost"
        base = host if "://" in host else f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        return cls(base, conn.login or "", conn.password or "", **kwargs)

    # ------------------------------------------------------------------ login
    def token_for(self, username: str, password: str) -> str:
        """A JWT for this user. Raises ApiError: transient if Airflow cannot be reached, else with
        the status of the refusal."""
        call = "POST /auth/token"
        body = {"json": {"username": username, "password": password}}
        response = self._exchange("POST", "/auth/token", {}, body, self.retry_on, self.login_attempts)
        if response.status_code not in (200, 201):
            raise ApiError(
                response.status_code,
                error_detail(response),
                message=(
                    f"Airflow at {self.base_url} refused the login of {username!r} "
                    f"(HTTP {response.status_code}); check the user name and password"
                ),
                response=response,
            )
        token = response.json().get("access_token")
        if not token:
            raise ApiError(response.status_code, "no access_token", call=call, response=response)
        return str(token)

    def login(self) -> None:
        """Log in as this client's user; later calls carry the token."""
        self._session.headers["Authorization"] = f"Bearer {self.token_for(self.username, self._password)}"

    def forget_token(self) -> None:
        """Drop the token: the next call logs in again (e.g. after the api-server was replaced)."""
        self._session.headers.pop("Authorization", None)

    def token(self, refresh: bool = False) -> str:
        """This client's JWT (logged in first if there is none yet, or if ``refresh``)."""
        if refresh or "Authorization" not in self._session.headers:
            self.login()
        return str(self._session.headers["Authorization"]).removeprefix("Bearer ")

    # ------------------------------------------------------------------ calls
    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        retry_on: Collection[int] | None = None,
        attempts: int | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Airflow's answer to one call (``path`` like ``/api/v2/dags``, ids quoted), whatever its
        status but 3xx (ApiError). As ``token``'s user if given, else as this client's (logged in
        on first use, again once on HTTP 401). Retried while the answer is in ``retry_on``
        (default: the client's) or Airflow cannot be reached, ``attempts`` tries in all (default:
        the client's; 1: no retry). Raises ApiError when the last try could not reach Airflow."""
        statuses = self.retry_on if retry_on is None else frozenset(retry_on)
        tries = self.attempts if attempts is None else max(1, attempts)
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        elif "Authorization" not in self._session.headers:
            self.login()
        renewed = token is not None
        while True:
            response = self._exchange(method, path, headers, kwargs, statuses, tries)
            if response.status_code != 401 or renewed:
                return response
            renewed = True
            self.login()

    def call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> Any:
        """The JSON of Airflow's answer to :meth:`request`; None for a 404 if ``missing_ok``.
        Raises ApiError for a 4xx/5xx answer."""
        response = self.request(method, path, **kwargs)
        if missing_ok and response.status_code == 404:
            return None
        raise_for(response, f"{method} {path}")
        return response.json()

    def pages(self, path: str, key: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paged ``GET`` listing (``key``: the list's name, e.g. ``"dag_runs"``)."""
        offset = 0
        while True:
            page = self.call("GET", path, params={**(params or {}), "limit": PAGE_SIZE, "offset": offset})
            items = page.get(key) or []
            yield from items
            offset += len(items)
            if not items or offset >= int(page.get("total_entries", 0)):
                return

    # ------------------------------------------------------------------ plumbing
    def _exchange(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        kwargs: Mapping[str, Any],
        statuses: Collection[int],
        tries: int,
    ) -> requests.Response:
        """One call, retried while the answer is in ``statuses`` or Airflow cannot be reached."""
        attempt = 1
        while True:
            try:
                response = self._send(method, path, headers, kwargs)
            except ApiError:
                if attempt >= tries:
                    raise
                self._pause(attempt)
                attempt += 1
                continue
            if 300 <= response.status_code < 400:
                where = response.headers.get("Location", "elsewhere")
                raise ApiError(
                    response.status_code,
                    f"redirected to {where}; check the base URL {self.base_url} (redirects are not followed)",
                    call=f"{method} {path}",
                    response=response,
                )
            if response.status_code not in statuses or attempt >= tries:
                return response
            self._pause(attempt, retry_after(response))
            attempt += 1

    def _send(
        self, method: str, path: str, headers: Mapping[str, str], kwargs: Mapping[str, Any]
    ) -> requests.Response:
        """One HTTP exchange, redirects not followed; ApiError (transient) if Airflow cannot be reached."""
        options = {"timeout": self.timeout, **kwargs, "allow_redirects": False}
        if headers:
            options["headers"] = headers
        try:
            response = self._session.request(method, f"{self.base_url}{path}", **options)
        except requests.RequestException as exc:
            self._trace(method, path, type(exc).__name__)
            timeout = options["timeout"]
            if isinstance(exc, requests.Timeout):
                why = f"Airflow at {self.base_url} did not answer within {timeout:g} s"
            else:
                why = f"cannot reach Airflow at {self.base_url} ({type(exc).__name__})"
            raise ApiError(None, why, call=f"{method} {path}") from None
        self._trace(method, path, response.status_code)
        return response

    def _pause(self, attempt: int, asked: float | None = None) -> None:
        """Wait before try ``attempt + 1``: what the answer asked (``Retry-After``), else longer
        with each try."""
        time.sleep(asked if asked is not None else self.retry_delay * attempt)

    def _trace(self, method: str, path: str, status: int | str) -> None:
        if self._log is not None:
            self._log(f"{method} {path} -> {status}")
