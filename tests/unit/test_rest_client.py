"""The REST transport (:mod:`backfill_controller.client.rest`) with the HTTP layer faked: quoting, redirects,
retries, logins and the one error type."""

from __future__ import annotations

import doctest
import json
from collections.abc import Iterable
from typing import Any

import pytest
import requests

import backfill_controller.client.rest as rest
from backfill_controller.client.airflow_api import AirflowApi
from backfill_controller.client.controller_api import ControllerApi
from backfill_controller.client.rest import (
    TRANSIENT_OR_DATABASE_ERROR,
    ApiError,
    RequestRefused,
    RestClient,
    error_detail,
    quote_id,
)


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> requests.Response:
    """A ``requests.Response`` as Airflow would send it (JSON body unless ``body`` is a str)."""
    response = requests.Response()
    response.status_code = status
    response.reason = "reason"
    text = body if isinstance(body, str) else json.dumps(body if body is not None else {})
    response._content = text.encode()
    response.headers.update(headers or {})
    return response


class FakeSession:
    """Answers each request with the next of ``answers`` (an exception is raised); records calls."""

    def __init__(self, answers: Iterable[requests.Response | Exception]) -> None:
        self.answers = list(answers)
        self.headers: dict[str, str] = {}
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        self.calls.append((method, url, kwargs))
        nxt = self.answers.pop(0)
        if isinstance(nxt, Exception):
            raise nxt
        return nxt


TOKEN = answer(201, {"access_token": "jwt"})


def client(*answers: requests.Response | Exception, cls: type[RestClient] = RestClient, **kw: Any) -> Any:
    session = FakeSession(answers)
    kw.setdefault("retry_delay", 0)
    return cls("http://af:8080/", "ada", "pw", session=session, **kw), session  # type: ignore[arg-type]


def paths(session: FakeSession) -> list[str]:
    return [f"{method} {url}" for method, url, _ in session.calls]


def test_ids_with_slashes_and_spaces_are_one_path_segment():
    assert quote_id("a/b c") == "a%2Fb%20c"
    assert quote_id("manual__2024-01-01T00:00:00+00:00") == "manual__2024-01-01T00%3A00%3A00%2B00%3A00"
    api, session = client(TOKEN, answer(200, {"state": "running"}), cls=ControllerApi)
    assert api.run_state("sales daily", "manual__x/y") == "running"
    assert paths(session)[1] == "GET http://af:8080/api/v2/dags/sales%20daily/dagRuns/manual__x%2Fy"


def test_the_tasks_client_quotes_ids_too():
    api, session = client(TOKEN, answer(200, {"note": None}), answer(200, {}), cls=AirflowApi)
    api.append_note("a/b", "run 1", "why")
    assert paths(session)[2] == "PATCH http://af:8080/api/v2/dags/a%2Fb/dagRuns/run%201"


@pytest.mark.parametrize(
    "old, written",
    [
        (None, "why"),
        ("checked by ops", "checked by ops\n\nwhy"),
        ("checked by ops\n\nwhy", None),
        ("x" * 999, "x" * 994 + "…\n\nwhy"),
    ],
    ids=["no note: ours", "a person's note stays above ours", "ours already there: nothing", "long: old cut"],
)
def test_a_cleared_runs_note_is_added_to_not_replaced(old, written):
    api, session = client(TOKEN, answer(200, {"note": old}), answer(200, {}), cls=AirflowApi)
    api.append_note("sales", "r1", "why")
    patches = [body for method, _, body in session.calls if method == "PATCH"]
    assert [p["json"]["note"] for p in patches] == ([written] if written else [])
    assert all(len(p["json"]["note"]) <= 1000 for p in patches)


def test_the_docstring_examples_hold():
    assert doctest.testmod(rest).failed == 0


def test_the_password_goes_only_in_the_login_body_and_the_token_in_later_calls():
    api, session = client(TOKEN, answer(200, {"dags": []}))
    assert api.call("GET", "/api/v2/dags") == {"dags": []}
    (login, login_url, login_kwargs), (_, _, call_kwargs) = session.calls
    assert (login, login_url) == ("POST", "http://af:8080/auth/token")
    assert login_kwargs["json"] == {"username": "ada", "password": "pw"}
    assert session.headers["Authorization"] == "Bearer jwt"
    assert "pw" not in json.dumps(call_kwargs)


def test_a_redirect_is_not_followed_and_is_an_error():
    api, session = client(TOKEN, answer(302, {}, {"Location": "https://elsewhere/login"}))
    with pytest.raises(ApiError) as refused:
        api.request("GET", "/api/v2/dags")
    assert refused.value.status == 302 and "https://elsewhere/login" in str(refused.value)
    assert len(session.calls) == 2
    assert all(kwargs["allow_redirects"] is False for _, _, kwargs in session.calls)


def test_a_503_is_retried_until_it_passes():
    api, session = client(TOKEN, answer(503, {"detail": "database is locked"}), answer(200, {"ok": 1}))
    assert api.call("GET", "/api/v2/dags") == {"ok": 1}
    assert paths(session) == ["POST http://af:8080/auth/token", *["GET http://af:8080/api/v2/dags"] * 2]


def test_retries_end_with_the_last_answer_as_a_transient_error():
    api, session = client(TOKEN, *[answer(503, {"detail": "busy"})] * 3, attempts=3)
    with pytest.raises(ApiError, match="GET /api/v2/dags -> HTTP 503: busy") as failed:
        api.call("GET", "/api/v2/dags")
    assert failed.value.transient and len(session.calls) == 4


def test_a_500_is_retried_only_for_a_caller_that_asks():
    api, session = client(TOKEN, answer(500, {"detail": "Database error"}), answer(200, {"dag_run_id": "r"}))
    assert api.request("POST", "/api/v2/dags/x/dagRuns").status_code == 500
    assert len(session.calls) == 2
    retried = api.request("POST", "/api/v2/dags/x/dagRuns", retry_on=TRANSIENT_OR_DATABASE_ERROR)
    assert retried.status_code == 200 and len(session.calls) == 3


def test_no_retry_when_a_call_asks_for_one_attempt():
    api, session = client(TOKEN, answer(503, {"detail": "busy"}))
    assert api.request("POST", "/x", attempts=1).status_code == 503
    assert len(session.calls) == 2


def test_connection_trouble_is_retried_then_a_transient_error_without_status():
    api, session = client(TOKEN, requests.ConnectionError("refused"), answer(200, {"ok": 1}))
    assert api.call("GET", "/api/v2/dags") == {"ok": 1}
    api, session = client(TOKEN, *[requests.ConnectionError("refused")] * 2, attempts=2)
    with pytest.raises(ApiError, match="cannot reach Airflow at http://af:8080") as failed:
        api.call("GET", "/api/v2/dags")
    assert failed.value.status is None and failed.value.transient


def test_an_expired_token_is_renewed_once():
    renewed = answer(201, {"access_token": "jwt2"})
    api, session = client(TOKEN, answer(401, {"detail": "expired"}), renewed, answer(200, {"ok": 1}))
    assert api.call("GET", "/api/v2/dags") == {"ok": 1}
    assert session.headers["Authorization"] == "Bearer jwt2"
    assert [p.split()[1].rsplit("/", 1)[1] for p in paths(session)] == ["token", "dags", "token", "dags"]


def test_a_refused_login_names_the_user_not_the_password():
    api, _ = client(answer(401, {"detail": "Invalid credentials"}))
    with pytest.raises(ApiError, match="refused the login of 'ada'") as refused:
        api.login()
    assert refused.value.status == 401 and not refused.value.transient and "pw" not in str(refused.value)


def test_a_given_token_is_used_as_is_and_not_renewed():
    api, session = client(answer(401, {"detail": "no"}))
    assert api.request("GET", "/api/v2/dags", token="theirs").status_code == 401
    assert session.calls[0][2]["headers"] == {"Authorization": "Bearer theirs"}
    assert len(session.calls) == 1


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"detail": "DAG with dag_id: 'x' not found"}, "DAG with dag_id: 'x' not found"),
        ({"detail": {"message": "no run 'x'", "field": "run_id"}}, "no run 'x'"),
        (
            {"detail": [{"loc": ["body", "conf", "dates"], "msg": "bad date"}, {"msg": "other"}]},
            "conf.dates: bad date\nother",
        ),
        ("Internal Server Error", "Internal Server Error"),
    ],
    ids=["text", "the controller's message", "validation errors", "not JSON"],
)
def test_the_error_detail_comes_from_airflows_answer(body, detail):
    assert error_detail(answer(400, body)) == detail
    api, _ = client(TOKEN, answer(404, body))
    with pytest.raises(ApiError) as failed:
        api.call("GET", "/api/v2/dags/x")
    assert failed.value.detail == detail and failed.value.status == 404
    assert str(failed.value) == f"GET /api/v2/dags/x -> HTTP 404: {detail}"


def test_every_client_raises_the_one_error_type():
    refusal = {"detail": {"message": "dates: not a date"}}
    api, _ = client(TOKEN, answer(422, refusal), cls=ControllerApi)
    with pytest.raises(RequestRefused) as refused:
        api.start_backfill({"dag_id": "x"})
    assert isinstance(refused.value, ApiError)
    assert (refused.value.status, refused.value.detail) == (422, "dates: not a date")

    tasks, _ = client(TOKEN, answer(409, {"detail": {"message": "overlap"}}), cls=AirflowApi)
    with pytest.raises(ApiError) as failed:
        tasks.plan_run("manual__1")
    assert type(failed.value) is ApiError and failed.value.detail == "overlap"


def test_the_front_door_retries_a_database_error_and_the_rest_of_the_tasks_calls_too():
    locked = answer(500, {"detail": "Database error"})
    api, session = client(TOKEN, locked, answer(201, {"dag_run_id": "r"}), cls=ControllerApi)
    assert api.start_backfill({}) == "r" and len(session.calls) == 3
    first, again = session.calls[1][2]["params"], session.calls[2][2]["params"]
    assert first == again  # the same run_id: a retry is answered with the run created before
    tasks, session = client(
        TOKEN, answer(500, {"detail": "Database error"}), answer(200, {"paused": False}), cls=AirflowApi
    )
    assert tasks.paused("manual__1") == {"paused": False} and len(session.calls) == 3


def test_a_control_is_not_retried():
    api, session = client(TOKEN, answer(503, {"detail": "busy"}), cls=ControllerApi)
    with pytest.raises(ApiError, match="HTTP 503"):
        api.control("manual__1", "pause")
    assert len(session.calls) == 2


def test_a_forgotten_token_means_a_new_login():
    api, session = client(TOKEN, answer(201, {"access_token": "jwt2"}))
    assert api.token() == "jwt"
    api.forget_token()
    assert api.token() == "jwt2" and len(session.calls) == 2


def test_a_runs_work_is_asked_of_the_plugin_by_its_quoted_run_id_and_retried_like_the_tasks_calls():
    work = {"backfill_id": 7, "segment": 0}
    api, session = client(TOKEN, answer(500, {"detail": "Database error"}), answer(200, work), cls=AirflowApi)
    assert api.work("manual__2024-01-01T00:00:00+00:00") == work
    url = "http://af:8080/backfill-controller/api/controller_runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00/work"
    assert paths(session)[1:] == [f"GET {url}", f"GET {url}"]


def test_a_run_of_no_planned_backfill_has_no_work():
    api, _ = client(TOKEN, answer(404, {"detail": {"message": "no planned backfill"}}), cls=AirflowApi)
    with pytest.raises(ApiError) as failed:
        api.work("manual__1")
    assert (failed.value.status, failed.value.detail) == (404, "no planned backfill")
