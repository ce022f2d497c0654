"""The plugin's tables are what its migrations make: on a fresh database, on one where an earlier
version made them on first use, and through the DB manager that ``airflow db migrate`` runs.

The migrations run on SQLite files here; ``tests/integration/test_fresh_deployment.py`` runs
``airflow db migrate`` on PostgreSQL and compares the result with the declarations there too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    inspect,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from backfill_controller.db.manager import VERSION_TABLE, BackfillControllerDBManager, alembic_config, migrate
from backfill_controller.db.tables import metadata
from backfill_controller.provider import get_provider_info

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
T = datetime(2024, 1, 1, tzinfo=UTC)


def first_use_tables() -> MetaData:
    """The tables as the plugin made them on first use before it had migrations
    (``metadata.create_all``), kept here as they were whatever the declarations become."""
    old = MetaData()
    Table(
        "backfill_controller_ledger",
        old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("controller_run_id", String(250), nullable=False, unique=True),
        Column("target_dag_id", String(250), nullable=False),
        Column("requester", String(512), nullable=True),
        Column("span_first", String(40), nullable=True),
        Column("span_last", String(40), nullable=True),
        Column("run_ids", Text, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
    )
    Table(
        "backfill_controller_history",
        old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("controller_run_id", String(250), nullable=False, index=True),
        Column("action", String(20), nullable=False),
        Column("actor", String(512), nullable=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("detail", Text, nullable=True),
    )
    Table(
        "backfill_controller_outcome",
        old,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("controller_run_id", String(250), nullable=False, unique=True),
        Column("clear_number", Integer, nullable=False),
        Column("summary", Text, nullable=False),
        Column("run_states", Text, nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
    )
    return old


#: One row per table, as the first-use code wrote them.
#: What revision 0002 adds to the ledger: empty for the backfills recorded before it.
NEW_LEDGER_COLUMNS = ("request", "segments", "authorized_at", "segment_token")

ROWS = {
    "backfill_controller_ledger": {
        "controller_run_id": "manual__a",
        "target_dag_id": "sales",
        "requester": "ann",
        "span_first": "2024-01-01T00:00:00+00:00",
        "span_last": "2024-01-03T00:00:00+00:00",
        "run_ids": '["r1", "r2", "r3"]',
        "recorded_at": T,
    },
    "backfill_controller_history": {
        "controller_run_id": "manual__a",
        "action": "pause",
        "actor": "ann",
        "at": T,
        "detail": None,
    },
    "backfill_controller_outcome": {
        "controller_run_id": "manual__a",
        "clear_number": 0,
        "summary": '{"success": 3}',
        "run_states": '{"r1": "success"}',
        "recorded_at": T,
    },
}


def sqlite_file(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}")


def shape(engine: Engine) -> dict[str, Any]:
    """Each of the plugin's tables as the database has it: columns (name, type, nullable),
    primary key, indexes and unique constraints."""
    found = inspect(engine)
    return {
        name: {
            "columns": [(c["name"], repr(c["type"]), c["nullable"]) for c in found.get_columns(name)],
            "primary key": found.get_pk_constraint(name)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in found.get_indexes(name)
            ),
            "uniques": sorted(tuple(u["column_names"]) for u in found.get_unique_constraints(name)),
        }
        for name in sorted(metadata.tables)
        if found.has_table(name)
    }


def version(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()


def rows(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the plugin's tables (the columns each has now), the time zone left out (SQLite
    keeps none)."""
    found: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as connection:
        for name, table in sorted(metadata.tables.items()):
            if not inspect(connection).has_table(name):
                continue
            present = {column["name"] for column in inspect(connection).get_columns(name)}
            columns = [column for column in table.c if column.name in present]
            found[name] = [
                {k: v.replace(tzinfo=None) if isinstance(v, datetime) else v for k, v in row.items()}
                for row in connection.execute(select(*columns).order_by(table.c.id)).mappings()
            ]
    return found


def migrated(engine: Engine) -> None:
    with engine.begin() as connection:
        migrate(connection)


def write_rows(connection: Connection, tables: MetaData, names: list[str] | None = None) -> None:
    for name in names or list(ROWS):
        connection.execute(tables.tables[name].insert().values(**ROWS[name]))


@pytest.fixture
def declared(tmp_path: Path) -> Engine:
    """A database whose tables come straight from the declarations (``create_all``)."""
    engine = sqlite_file(tmp_path / "declared.db")
    metadata.create_all(engine)
    return engine


@pytest.fixture
def fresh(tmp_path: Path) -> Engine:
    return sqlite_file(tmp_path / "fresh.db")


def test_the_migrations_make_the_declared_tables(fresh, declared):
    migrated(fresh)

    assert set(inspect(fresh).get_table_names()) == {*metadata.tables, VERSION_TABLE}
    assert shape(fresh) == shape(declared)
    assert version(fresh) == HEAD
    with fresh.connect() as connection:  # what `alembic revision --autogenerate` would write: nothing
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, metadata) == []


#: Changes of the declarations that need a migration, each applied to a copy of the ledger table.
CHANGES: dict[str, Callable[[Table], object]] = {
    "a new column": lambda t: t.append_column(Column("note", Text, nullable=True)),
    "a longer column": lambda t: setattr(t.c.target_dag_id, "type", String(500)),
    "a column made nullable": lambda t: setattr(t.c.target_dag_id, "nullable", True),
    "a new index": lambda t: Index("ix_backfill_controller_ledger_target_dag_id", t.c.target_dag_id),
    "a new unique constraint": lambda t: t.append_constraint(UniqueConstraint("requester")),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_a_declaration_changed_without_its_migration_is_noticed(tmp_path, fresh, change):
    migrated(fresh)
    changed = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    CHANGES[change](changed.tables["backfill_controller_ledger"])
    declared = sqlite_file(tmp_path / "changed.db")
    changed.create_all(declared)

    assert shape(fresh) != shape(declared)
    with fresh.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, changed) != []


@pytest.mark.parametrize(
    "made",
    [
        list(ROWS),
        ["backfill_controller_ledger"],
        ["backfill_controller_ledger", "backfill_controller_history"],
    ],
    ids=["all three, by the previous version", "the ledger only", "the ledger and the history"],
)
def test_tables_made_on_first_use_are_adopted_with_their_rows(fresh, declared, made):
    old = first_use_tables()
    old.create_all(fresh, tables=[old.tables[name] for name in made])
    with fresh.begin() as connection:
        write_rows(connection, old, made)
    before = rows(fresh)

    migrated(fresh)

    assert version(fresh) == HEAD
    assert shape(fresh) == shape(declared)
    after = rows(fresh)
    assert {
        name: [{k: row[k] for k in ROWS[name] | {"id": 0}} for row in after[name]] for name in made
    } == before
    assert all(row[k] is None for row in after["backfill_controller_ledger"] for k in NEW_LEDGER_COLUMNS)
    assert all(after[name] == [] for name in set(ROWS) - set(made))


def test_migrating_twice_changes_nothing(fresh):
    migrated(fresh)
    with fresh.begin() as connection:
        write_rows(connection, metadata)
    before = (shape(fresh), version(fresh), rows(fresh))

    migrated(fresh)

    assert (shape(fresh), version(fresh), rows(fresh)) == before


def test_a_table_of_another_shape_stops_the_migration_naming_its_columns(fresh):
    with fresh.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE backfill_controller_outcome (id INTEGER PRIMARY KEY, run_id TEXT, summary TEXT)"
        )

    with pytest.raises(RuntimeError, match="backfill_controller_outcome") as raised:
        migrated(fresh)

    message = str(raised.value)
    assert "missing: clear_number, controller_run_id, recorded_at, run_states" in message
    assert "unexpected: run_id" in message
    assert version(fresh) is None


def test_the_downgrade_to_base_drops_the_tables_and_the_upgrade_makes_them_again(fresh, declared):
    migrated(fresh)
    with fresh.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(fresh).get_table_names()) == {VERSION_TABLE}
    assert version(fresh) is None

    migrated(fresh)

    assert shape(fresh) == shape(declared)


def test_airflow_db_migrate_finds_the_manager_through_the_provider():
    from airflow.providers_manager import ProvidersManager
    from airflow.utils.db_manager import RunDBManager

    (name,) = get_provider_info()["db-managers"]
    module, _, attribute = name.rpartition(".")

    assert name in ProvidersManager().db_managers  # what RunDBManager runs
    assert getattr(importlib.import_module(module), attribute) is BackfillControllerDBManager
    RunDBManager._validate(BackfillControllerDBManager)  # its tables are not Airflow's, nor its version table


@pytest.fixture
def airflow_session() -> Iterator[Session]:
    """A session on Airflow's own metadata database (this test run's throwaway AIRFLOW_HOME), as
    ``airflow db migrate`` hands the manager; the plugin's tables are dropped afterwards."""
    from airflow import settings

    session = settings.Session()
    try:
        yield session
    finally:
        session.rollback()
        with settings.get_engine().begin() as connection:
            BackfillControllerDBManager(session).drop_tables(connection)
        session.close()


def test_the_manager_makes_checks_resets_and_drops_the_tables_on_airflows_database(airflow_session):
    from airflow import settings

    engine = settings.get_engine()
    manager = BackfillControllerDBManager(airflow_session)
    assert not manager.check_migration()  # `airflow db check-migrations` waits

    manager.initdb()  # `airflow db migrate` on a fresh database
    assert manager.check_migration()
    assert version(engine) == HEAD
    with engine.begin() as connection:
        write_rows(connection, metadata)

    manager.upgradedb()  # `airflow db migrate` again: nothing to do, every row kept
    assert sum(map(len, rows(engine).values())) == len(ROWS)

    manager.resetdb()  # `airflow db reset`: dropped, then made again, empty
    assert manager.check_migration()
    assert rows(engine) == {name: [] for name in sorted(metadata.tables)}

    with engine.begin() as connection:
        manager.drop_tables(connection)
    assert set(inspect(engine).get_table_names()) & {*metadata.tables, VERSION_TABLE} == set()


def test_the_manager_downgrades_to_a_release_or_revision(airflow_session):
    from airflow import settings

    engine = settings.get_engine()
    manager = BackfillControllerDBManager(airflow_session)
    manager.upgradedb()
    assert list(manager.revision_heads_map.values())[-1] == HEAD  # the newest release names the head

    manager.downgrade(to_revision="base")

    assert version(engine) is None
    assert set(inspect(engine).get_table_names()) & set(metadata.tables) == set()
