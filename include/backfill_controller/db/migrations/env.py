"""Alembic's environment for the plugin's tables: only they are compared and migrated, and their
version is kept in their own table (``backfill_controller_alembic_version``), never in Airflow's.

The migrations run on the connection the caller gives (``config.attributes["connection"]``:
:func:`backfill_controller.db.manager.migrate`), else on Airflow's configured metadata database.
"""

from __future__ import annotations

import contextlib
from typing import Any

from alembic import context

from backfill_controller.db.manager import VERSION_TABLE
from backfill_controller.db.tables import metadata

config = context.config


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Only the plugin's tables: autogenerate leaves Airflow's own alone."""
    return not (type_ == "table" and name not in metadata.tables)


def run_migrations_offline() -> None:
    """Print the SQL (``--sql``, ``airflow db-manager migrate --show-sql-only``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        compare_type=True,
        render_as_batch=True,
        include_object=include_object,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with contextlib.ExitStack() as stack:
        connection = config.attributes.get("connection")
        if connection is None:
            from airflow import settings

            connection = stack.enter_context(settings.get_engine().connect())
        context.configure(
            connection=connection,
            target_metadata=metadata,
            transaction_per_migration=True,
            compare_type=True,
            render_as_batch=True,  # SQLite alters a table by copying it
            include_object=include_object,
            version_table=VERSION_TABLE,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
