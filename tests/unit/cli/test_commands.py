"""Specification of :mod:`backfill_controller.cli.commands`: each command run by :func:`main`, with a fake
REST client; no server."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from backfill_controller.cli.commands import main, status_exit_code, ui_link
from backfill_controller.cli.common import (
    EXIT_FAILED,
    EXIT_STATUS_UNREACHABLE,
    EXIT_STILL_RUNNING,
    EXIT_SUCCESS,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from backfill_controller.cli.flags import command_of
from backfill_controller.domain.state import Phase
from tests.unit.cli.test_views import page_backfill

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_refused_command_line_exits_2_before_any_call(capsys):
    assert main(["sales", "--dates", "2024-01-05", "-s", "2024-01-01"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage: backfill" in err and "backfill: error: give either --dates" in err


def test_the_command_imports_neither_airflow_nor_requests():
    code = (
        "import importlib, pkgutil, sys, backfill_controller.cli\n"
        "for m in pkgutil.iter_modules(backfill_controller.cli.__path__, 'backfill_controller.cli.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'requests')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "[]"


def test_a_missing_password_off_a_terminal_exits_2_naming_where_to_put_it(monkeypatch, capsys):
    for var in (
        "AIRFLOW_CONN_AIRFLOW_API",
        "BACKFILL_API_URL",
        "BACKFILL_API_PASSWORD",
        "BACKFILL_API_CONN_ID",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO())
    assert main(["sales", "-s", "2024-01-01", "--username", "ada"]) == EXIT_USAGE
    assert "BACKFILL_API_PASSWORD" in capsys.readouterr().err


def test_ui_link_quotes_the_run_id():
    assert ui_link("http://h:1", "manual__2024-01-01T00:00:00+00:00") == (
        "http://h:1/dags/backfill_controller/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00"
    )


@pytest.mark.parametrize("phase", list(Phase), ids=[p.value for p in Phase])
def test_status_exits_with_what_the_phase_says(phase):
    expected = {
        Phase.SUCCEEDED: EXIT_SUCCESS,
        Phase.PLANNED: EXIT_SUCCESS,
        Phase.FAILED: EXIT_FAILED,
        Phase.CANCELLED: EXIT_FAILED,
    }.get(phase, EXIT_STILL_RUNNING)
    assert status_exit_code(phase.value) == expected


class FakeControllerApi:
    """Stands in for :class:`backfill_controller.client.controller_api.ControllerApi` in
    ``run_status``/``run_list``."""

    answer: Any = None
    calls: list[tuple[str, Any]] = []

    def __init__(self, url: str, username: str, password: str, *, log: Any = None) -> None:
        self.url = url

    def login(self) -> None:
        self.calls.append(("login", self.url))

    def _answer(self, call: tuple[str, Any]) -> Any:
        self.calls.append(call)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    def backfill(self, run_id: str) -> dict[str, Any]:
        return self._answer(("backfill", run_id))

    def backfills(self, **filters: Any) -> dict[str, Any]:
        return self._answer(("backfills", filters))

    def control(self, run_id: str, control: str) -> dict[str, Any]:
        return self._answer(("control", run_id, control))


@pytest.fixture
def fake_api(monkeypatch):
    import backfill_controller.client.controller_api as client

    monkeypatch.setattr(client, "ControllerApi", FakeControllerApi)
    monkeypatch.setattr(FakeControllerApi, "calls", [])
    for var in ("AIRFLOW_CONN_AIRFLOW_API", "BACKFILL_API_URL", "BACKFILL_API_CONN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BACKFILL_API_USERNAME", "ada")
    monkeypatch.setenv("BACKFILL_API_PASSWORD", "s3cr3t-pw")
    return FakeControllerApi


@pytest.mark.parametrize(
    ("phase", "code"),
    [("succeeded", 0), ("cancelled", 1), ("running", 3)],
    ids=["done", "cancelled", "running"],
)
def test_backfill_status_prints_the_backfill_and_exits_with_its_phase(fake_api, capsys, phase, code):
    fake_api.answer = page_backfill(phase=phase)
    assert main(["status", "manual__1", "--api_url", "http://af:8080"]) == code
    assert fake_api.calls == [("login", "http://af:8080"), ("backfill", "manual__1")]
    assert capsys.readouterr().out.startswith(f"backfill manual__1: {phase}\n")


def test_backfill_status_of_no_backfill_exits_2_and_unreachable_exits_4(fake_api, capsys):
    from backfill_controller.client.rest import ApiError

    fake_api.answer = ApiError(404, "no backfill has the run id 'x'", call="GET ...")
    assert main(["status", "x"]) == EXIT_USAGE
    fake_api.answer = ApiError(None, "cannot reach Airflow at http://localhost:8080")
    assert main(["status", "x"]) == EXIT_STATUS_UNREACHABLE != EXIT_STILL_RUNNING
    err = capsys.readouterr().err
    assert "no backfill has the run id 'x'" in err and "cannot reach Airflow" in err


def test_backfill_list_passes_the_filters_and_prints_a_line_each(fake_api, capsys):
    fake_api.answer = {"total": 41, "offset": 20, "limit": 20, "backfills": [page_backfill()]}
    argv = ["list", "--dag_id", "sales", "--state", "failed", "--limit", "20", "--offset", "20"]
    assert main(argv) == EXIT_SUCCESS
    assert fake_api.calls[1] == (
        "backfills",
        {"dag_id": "sales", "state": "failed", "limit": 20, "offset": 20},
    )
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith("manual__1  failed  sales")
    assert err.strip() == "backfills 21-21 of 41; next: --offset 21"


@pytest.mark.parametrize(
    "argv",
    [["--limit", "0"], ["--limit", "201"], ["--offset", "-1"], ["--state", "done"], ["--dag-id", "a b"]],
    ids=["limit 0", "limit over 200", "negative offset", "not a phase", "not a dag_id"],
)
def test_backfill_list_refuses_bad_filters_with_exit_2(fake_api, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["list", *argv])
    assert info.value.code == EXIT_USAGE
    assert argv[0] in capsys.readouterr().err
    assert fake_api.calls == []


def test_the_client_lists_backfills_with_the_filters_as_query_parameters():
    from backfill_controller.client.controller_api import ControllerApi

    class Response:
        status_code = 200

        def json(self) -> dict[str, Any]:
            return {"total": 0, "backfills": []}

    class Session:
        headers = {"Authorization": "Bearer t"}
        calls: list[tuple[str, str, Any]] = []

        def request(self, method: str, url: str, **kwargs: Any) -> Response:
            self.calls.append((method, url, kwargs.get("params")))
            return Response()

    session = Session()
    api = ControllerApi("http://af:8080/", "ada", "pw", session=session)  # type: ignore[arg-type]
    assert api.backfills() == {"total": 0, "backfills": []}
    api.backfills(dag_id="sales", state="failed", limit=5, offset=10)
    assert session.calls == [
        ("GET", "http://af:8080/backfill-controller/api/backfills", {"limit": 50, "offset": 0}),
        (
            "GET",
            "http://af:8080/backfill-controller/api/backfills",
            {"limit": 5, "offset": 10, "dag_id": "sales", "state": "failed"},
        ),
    ]


@pytest.mark.parametrize(
    ("command", "control"),
    [("pause", "pause"), ("resume", "resume"), ("cancel", "cancel"), ("rerun-failed", "rerun_failed")],
)
def test_each_control_is_a_sub_command_that_posts_it(fake_api, capsys, command, control):
    assert command_of([command, "manual__1"]) == command
    assert command_of([command, "-s", "2024-01-01"]) == "backfill"  # a DAG named so, backfilled
    fake_api.answer = {"run_id": "manual__1", "phase": "paused", "dag_run_id": "manual__2", "dates": 2}
    assert main([command, "manual__1", "--api_url", "http://af:8080"]) == EXIT_SUCCESS
    assert fake_api.calls[1] == ("control", "manual__1", control)
    out = capsys.readouterr().out
    assert out.startswith("started manual__2" if control == "rerun_failed" else "backfill manual__1: paused")


@pytest.mark.parametrize(
    ("status", "code"),
    [(409, EXIT_FAILED), (403, EXIT_FAILED), (404, EXIT_USAGE), (None, EXIT_UNREACHABLE)],
    ids=["does not fit the phase", "no right", "no such backfill", "unreachable"],
)
def test_a_refused_control_says_why_and_exits_with_what_refused_it(fake_api, capsys, status, code):
    from backfill_controller.client.rest import ApiError

    detail = "the backfill is succeeded: only a running backfill can be paused"
    fake_api.answer = ApiError(status, detail, call="POST ...")
    message = f"POST ... -> HTTP {status}: {detail}" if status else f"POST ...: {detail}"
    assert main(["pause", "manual__1"]) == code
    assert message in capsys.readouterr().err
