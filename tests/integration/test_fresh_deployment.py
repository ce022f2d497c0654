"""A fresh deployment: ``airflow db migrate`` makes the plugin's tables before any request, so no
request depends on being the first one to reach the plugin.

Each test starts its own Airflow on an empty database (the suite's shared one has served
requests already), with only the repository's DAG files. On PostgreSQL the first requests to
reach the plugin are refused (403, 422) and every later one works; on SQLite twelve concurrent
first backfills are all started, and twelve more after the api-server restarts.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from alembic.script import ScriptDirectory
from conftest import DAGS_TIMEOUT, REPO_ROOT, SECRET, START_TIMEOUT
from sqlalchemy import create_engine, inspect

from backfill_controller.contract import CONTROLLER_DAG_ID as CONTROLLER
from backfill_controller.db.manager import VERSION_TABLE, alembic_config
from backfill_controller.db.tables import metadata

TARGET = "sales_pipeline"
FRONT_DOOR = "/backfill-controller/api/backfills"
CONCURRENT = 12


#: The newest revision of the plugin's migrations: where `airflow db migrate` leaves the tables.
HEAD_REVISION = ScriptDirectory.from_config(alembic_config()).get_current_head()


@contextmanager
def fresh_airflow(backend: str, request: pytest.FixtureRequest, **kwargs: Any) -> Iterator[Any]:
    """A new Airflow (``airflow db migrate`` on an empty database, then its four services) with
    the repository's DAG files; its AIRFLOW_HOME is kept, and named, when a test failed."""
    from scripts.local_airflow import LocalAirflow

    home = Path(tempfile.mkdtemp(prefix=f"backfill-airflow-fresh-{backend}-"))
    dags = home / "dags"
    dags.mkdir()
    for source in sorted((REPO_ROOT / "dags").glob("*.py")):
        (dags / source.name).symlink_to(source)
    instance = LocalAirflow(
        home=home,
        backend=backend,
        dags_folder=dags,
        plugins_folder=REPO_ROOT / "plugins",
        password=SECRET,
        **kwargs,
    )
    failures_before = request.session.testsfailed
    passed = False
    try:
        instance.start(timeout=START_TIMEOUT)
        yield instance
        passed = request.session.testsfailed == failures_before
    finally:
        instance.stop(grace=5)
        if passed:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"AIRFLOW_HOME of the failed test kept: {home}")


def plugin_schema(airflow: Any) -> dict[str, Any]:
    """The plugin's tables in the instance's metadata database, read directly: their names,
    columns and indexes, and the revision of its migrations."""
    engine = create_engine(airflow.sql_alchemy_conn)
    try:
        found = inspect(engine)
        names = sorted(set(found.get_table_names()) & {*metadata.tables, VERSION_TABLE})
        tables = {
            name: (
                [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(name)],
                sorted(i["name"] or "" for i in found.get_indexes(name)),
            )
            for name in names
        }
        version = None
        if VERSION_TABLE in names:
            with engine.connect() as connection:
                version = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
        return {"tables": tables, "version": version}
    finally:
        engine.dispose()


def post_as(airflow: Any, token: str, path: str, body: Any) -> requests.Response:
    return requests.post(
        f"{airflow.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120
    )


def one_date(day: str) -> dict[str, Any]:
    return {"dag_id": TARGET, "dates": [day], "reason": "fresh deployment"}


def started_at_once(airflow: Any, days: list[str]) -> list[requests.Response]:
    """One front-door backfill of each day, all sent at the same moment from their own threads."""
    token = airflow.token()
    ready = threading.Barrier(len(days))

    def start(day: str) -> requests.Response:
        ready.wait()
        return post_as(airflow, token, FRONT_DOOR, one_date(day))

    with ThreadPoolExecutor(len(days)) as pool:
        return list(pool.map(start, days))


def pause_controller(airflow: Any) -> None:
    """The backfills started stay queued: the test is about the requests, not the runs."""
    airflow.set_paused(CONTROLLER, True)


@pytest.fixture(scope="module")
def postgres_airflow(request: pytest.FixtureRequest) -> Iterator[tuple[Any, dict[str, Any]]]:
    """A fresh Airflow on PostgreSQL with FAB and a user of FAB's Public role (no rights), and the
    plugin's tables as ``airflow db migrate`` left them, read before any request reached the plugin."""
    users = {"nobody": ("Public", SECRET)}
    with fresh_airflow("postgres", request, auth_manager="fab", users=users) as airflow:
        migrated = plugin_schema(airflow)
        airflow.wait_for_dags([CONTROLLER, TARGET], timeout=DAGS_TIMEOUT)
        yield airflow, migrated


@pytest.mark.backend("postgres")
def test_airflow_db_migrate_makes_the_plugins_tables_before_any_request(postgres_airflow):
    airflow, migrated = postgres_airflow

    assert set(migrated["tables"]) == {*metadata.tables, VERSION_TABLE}
    assert migrated["version"] == HEAD_REVISION
    assert (
        "ix_backfill_controller_history_controller_run_id"
        in migrated["tables"]["backfill_controller_history"][1]
    )
    check = airflow.airflow_cli("db", "check-migrations", "--migration-wait-timeout", "5")
    assert check.returncode == 0, check.stderr[-2000:]


@pytest.mark.backend("postgres")
def test_after_refused_first_requests_every_request_works(postgres_airflow):
    airflow, migrated = postgres_airflow
    nobody = airflow.token_for("nobody", SECRET)
    admin = airflow.token()
    pause_controller(airflow)
    # A controller run triggered through Airflow's REST API for a DAG that does not exist: its plan
    # is refused after the ledger was read (where a first-use creation would be rolled back).
    unknown = airflow.trigger(CONTROLLER, {"dag_id": "no_such_dag", "dates": ["2024-01-01"]})

    refused = {
        "no right to read controller runs": post_as(
            airflow, nobody, "/backfill-controller/api/controller_runs/nope/plan", {}
        ),
        "a bad request": post_as(airflow, admin, FRONT_DOOR, {**one_date("2024-01-01"), "reprocess": "x"}),
        "no such target": post_as(
            airflow, admin, f"/backfill-controller/api/controller_runs/{unknown}/plan", {}
        ),
    }
    dry = post_as(airflow, admin, FRONT_DOOR + "/dry_run", one_date("2024-02-01"))
    started = post_as(airflow, admin, FRONT_DOOR, one_date("2024-02-01"))
    again = post_as(airflow, admin, FRONT_DOOR, one_date("2024-02-01"))  # the ledger has its dates
    listed = airflow.api("GET", FRONT_DOOR)

    assert {name: r.status_code for name, r in refused.items()} == {
        "no right to read controller runs": 403,
        "a bad request": 422,
        "no such target": 422,
    }, {name: r.text[:300] for name, r in refused.items()}
    assert dry.status_code == 200, dry.text
    assert started.status_code == 201, started.text
    assert again.status_code == 409, again.text
    assert listed.status_code == 200, listed.text
    assert started.json()["dag_run_id"] in {b["run_id"] for b in listed.json()["backfills"]}
    assert plugin_schema(airflow) == migrated  # no request created or changed a table


@pytest.mark.backend("sqlite")
def test_concurrent_first_backfills_are_all_started_and_a_restart_changes_nothing(request):
    with fresh_airflow("sqlite", request) as airflow:
        migrated = plugin_schema(airflow)
        airflow.wait_for_dags([CONTROLLER, TARGET], timeout=DAGS_TIMEOUT)
        pause_controller(airflow)

        first = started_at_once(airflow, [f"2024-03-{d:02d}" for d in range(1, CONCURRENT + 1)])
        airflow.restart("api-server")
        after_restart = started_at_once(airflow, [f"2024-04-{d:02d}" for d in range(1, CONCURRENT + 1)])
        listed = airflow.api("GET", FRONT_DOOR, params={"limit": 100})

        assert [r.status_code for r in first] == [201] * CONCURRENT, [r.text[:300] for r in first]
        assert [r.status_code for r in after_restart] == [201] * CONCURRENT, [
            r.text[:300] for r in after_restart
        ]
        assert listed.status_code == 200, listed.text
        started = {r.json()["dag_run_id"] for r in first + after_restart}
        assert started <= {b["run_id"] for b in listed.json()["backfills"]}
        assert migrated["version"] == HEAD_REVISION
        assert plugin_schema(airflow) == migrated
