"""The ``backfill`` command end to end: a subprocess (not a terminal) against the live Airflow.

The four commands that start a controller run run side by side (a run takes tens of seconds),
each started once the previous one has triggered its run: on SQLite, simultaneous
``POST .../dagRuns`` from several clients froze the api-server in this suite. Each test then
checks one command. They use August 2024 dates, which no other test touches. Every command's
output is checked for the password.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from backfill_controller.contract import CONTROLLER_DAG_ID, TARGET_RUN_PREFIX
from scripts.local_airflow import free_port

pytestmark = pytest.mark.backend("sqlite")

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "backfill_controller.cli"]
TIMEOUT = 900
PROGRESS_LINE = re.compile(r"^\[[#-]+\]  \d+/\d+ dates  done \d+  failed \d+  running \d+  waiting \d+", re.M)


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float

    @property
    def output(self) -> str:
        return self.out + self.err


@dataclass
class Running:
    proc: subprocess.Popen[str]
    began: float
    err_so_far: str = ""

    def wait_until_triggered(self, timeout: float = 120) -> None:
        """Read stderr until the command says it has started its run (or has stopped)."""
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            self.err_so_far += line
            if not line or line.startswith(("run ", "started ")):
                return
        pytest.fail(f"no run triggered in {timeout}s:\n{self.err_so_far}")


def cli_env(airflow, *, connection: bool = True) -> dict[str, str]:
    """The caller's environment and, if asked, the connection to Airflow. The command comes from
    the package installed in the interpreter's virtualenv, as for a user."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "BACKFILL_API_"))}
    if connection:
        user, password = quote(airflow.username, safe=""), quote(airflow.password, safe="")
        env["AIRFLOW_CONN_AIRFLOW_API"] = f"http://{user}:{password}@{urlsplit(airflow.url).netloc}"
    return env


def start(args: list[str], env: dict[str, str]) -> Running:
    proc = subprocess.Popen(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Running(proc, time.monotonic())


def finish(running: Running, timeout: float = TIMEOUT) -> Result:
    proc = running.proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"backfill did not finish in {timeout}s:\n{out}\n{running.err_so_far}{err}")
    return Result(proc.returncode, out, running.err_so_far + err, time.monotonic() - running.began)


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> Result:
    return finish(start(args, env), timeout=timeout)


def day_runs(airflow, dag_id: str, first: str, last: str) -> dict[str, dict]:
    params = {"logical_date_gte": f"{first}T00:00:00Z", "logical_date_lte": f"{last}T23:59:59Z", "limit": 100}
    data = airflow._json("GET", f"/api/v2/dags/{dag_id}/dagRuns", params=params)
    return {r["logical_date"][:10]: r for r in data["dag_runs"]}


@pytest.fixture(scope="module")
def commands(airflow) -> dict[str, Result]:
    """The commands that start a controller run, each started once the previous one has triggered."""
    flags = ["--api-url", airflow.url, "--username", airflow.username, "--password", airflow.password]
    # two segments (a head run and one continuation): progress must follow both
    window = ["-s", "2024-08-01", "-e", "2024-08-03", "--segment-size", "2", "--reason", "cli test"]
    window += ["--poll-interval", "2"]
    subset = ["--dates", "2024-08-20,2024-08-21", "-t", "work", "-i", "--missing-runs", "trigger"]
    argv = {
        "window": (["bf_daily", *window], cli_env(airflow)),
        "dry_run": (
            ["bf_daily", "-s", "2024-08-10", "-e", "2024-08-12", "--dry-run", *flags],
            cli_env(airflow, connection=False),
        ),
        "unknown_dag": (["no_such_dag", "-s", "2024-08-01"], cli_env(airflow)),
        "no_wait": (["bf_daily", *subset, "--no-wait"], cli_env(airflow)),
    }
    started = {}
    for name, (args, env) in argv.items():
        started[name] = start(args, env)
        started[name].wait_until_triggered()
    return {name: finish(running) for name, running in started.items()}


def assert_no_password(airflow, result: Result, password: str | None = None) -> None:
    assert (password or airflow.password) not in result.output


def test_a_window_is_backfilled_with_progress_and_the_table(airflow, commands):
    result = commands["window"]
    assert result.code == 0, result.output
    assert PROGRESS_LINE.search(result.err), result.err
    assert "3/3 dates  done 3  failed 0" in result.err
    assert "\r" not in result.err  # not a terminal: plain lines
    assert result.out.startswith("logical_date ")
    for day in ("2024-08-01", "2024-08-02", "2024-08-03"):
        assert (
            f"{day}T00:00:00+00:00  triggered  success  {TARGET_RUN_PREFIX}{day}T00:00:00+00:00" in result.out
        )
    assert "SUCCESS: 3 dates of bf_daily" in result.out
    runs = day_runs(airflow, "bf_daily", "2024-08-01", "2024-08-03")
    assert sorted(runs) == ["2024-08-01", "2024-08-02", "2024-08-03"]
    assert {r["state"] for r in runs.values()} == {"success"}
    assert all(r["note"].startswith("backfill_controller") for r in runs.values())
    assert all(r["note"].endswith(": cli test") for r in runs.values())
    assert_no_password(airflow, result)


def test_dry_run_prints_the_plan_and_creates_no_run(airflow, commands):
    result = commands["dry_run"]
    assert result.code == 0, result.output
    assert "dry run: 3 dates planned, 0 skipped" in result.err
    assert "DRY RUN: 3 dates of bf_daily: triggered 3" in result.out
    assert day_runs(airflow, "bf_daily", "2024-08-10", "2024-08-12") == {}
    assert_no_password(airflow, result)


def test_a_request_the_front_door_refuses_exits_2_at_once_naming_the_problem(airflow, commands):
    result = commands["unknown_dag"]
    assert result.code == 2, result.output
    assert "request refused, nothing was started" in result.err
    assert "dag_id: no such DAG in this Airflow (got 'no_such_dag')" in result.err
    assert result.out == ""
    assert_no_password(airflow, result)


def test_no_wait_prints_the_run_id_of_a_run_with_that_conf(airflow, commands):
    result = commands["no_wait"]
    assert result.code == 0, result.output
    run_id = result.out.strip()
    assert "\n" not in run_id and run_id.startswith("manual__")
    run = airflow._json("GET", f"/api/v2/dags/{CONTROLLER_DAG_ID}/dagRuns/{run_id}")
    assert run["conf"] == {
        "dag_id": "bf_daily",
        "dates": ["2024-08-20", "2024-08-21"],
        "task_regex": "work",
        "include_upstream": False,
        "missing_runs": "trigger",
    }
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) == "success"
    assert sorted(day_runs(airflow, "bf_daily", "2024-08-20", "2024-08-21")) == ["2024-08-20", "2024-08-21"]
    assert_no_password(airflow, result)


def test_a_conf_the_trigger_refuses_exits_2_and_starts_nothing(airflow):
    result = run(["bf_daily", "-s", "2024-08-25", "--max-active-runs", "1000"], cli_env(airflow))
    assert result.code == 2, result.output
    assert "request refused, nothing was started" in result.err
    assert "max_active_runs: is out of range (got 1000); accepted: an integer from 1 to 64" in result.err
    assert_no_password(airflow, result)


def test_a_wrong_password_exits_3_without_showing_it(airflow):
    wrong = "Wr0ng-s3cret"
    args = ["bf_daily", "-s", "2024-08-25", "--api-url", airflow.url, "--username", airflow.username]
    result = run([*args, "--password", wrong], cli_env(airflow, connection=False))
    assert result.code == 3, result.output
    assert "refused the login" in result.err and "HTTP 401" in result.err
    assert_no_password(airflow, result, wrong)


def test_an_unreachable_airflow_exits_3_without_showing_the_password():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "BACKFILL_API_"))}
    env["AIRFLOW_CONN_AIRFLOW_API"] = f"http://ada:Wr0ng-s3cret@127.0.0.1:{free_port()}"
    result = run(["bf_daily", "-s", "2024-08-25"], env, timeout=60)
    assert result.code == 3, result.output
    assert "cannot reach Airflow at http://127.0.0.1:" in result.err
    assert "Wr0ng-s3cret" not in result.output


def test_an_old_runbook_command_runs_and_status_and_list_show_it(airflow):
    """``-D DATE`` and Airflow 1.10's underscore spellings, then ``status`` and ``list`` of the run."""
    env = cli_env(airflow)
    started = run(["bf_daily", "-D", "2024-08-28", "--reset_dagruns", "--no_wait"], env)
    assert started.code == 0, started.output
    run_id = started.out.strip().splitlines()[-1]
    assert airflow.wait_for_run(CONTROLLER_DAG_ID, run_id, timeout=TIMEOUT) == "success"
    assert sorted(day_runs(airflow, "bf_daily", "2024-08-28", "2024-08-28")) == ["2024-08-28"]

    status = run(["status", run_id], env)
    assert status.code == 0, status.output
    assert "succeeded" in status.out and "2024-08-28T00:00:00+00:00" in status.out
    listed = run(["list", "--dag-id", "bf_daily", "--state", "succeeded", "--limit", "200"], env)
    assert listed.code == 0, listed.output
    assert run_id in listed.out
    failed = run(["list", "--dag-id", "bf_daily", "--state", "failed", "--limit", "200"], env)
    assert run_id not in failed.out
    assert run(["status", "manual__no_such_run"], env).code == 2
