"""How ``airflow db migrate`` makes and upgrades the plugin's tables: an external DB manager.

Airflow runs the DB managers that installed providers name under ``db-managers``
(:func:`backfill_controller.provider.get_provider_info`), after its own migrations, in
``airflow db migrate`` and ``airflow db reset``; ``airflow db check-migrations`` waits for them too.
:class:`BackfillControllerDBManager` keeps the plugin's tables (:mod:`backfill_controller.db.tables`)
at the head of its own Alembic migrations (``migrations/versions``), versioned in its own table
``backfill_controller_alembic_version``.

Differences from :class:`airflow.utils.db_manager.BaseDBManager` (checked against Airflow 3.3.2
and 3.4.0b2, whose ``BaseDBManager`` and ``RunDBManager`` are the same):

* The tables are only ever made by the migrations, never from the declarations
  (``create_all``): a fresh database and an upgraded one are the same schema, and the migrations
  are what the unit tests run.
* A database that ran the plugin before it had migrations holds the tables, made on first use,
  and no version table. The first revision adopts them (:mod:`.migrations.versions.0001_create_tables`):
  it keeps every table that has the columns it expects, with its rows, creates the missing ones,
  and refuses a table of another shape; the version is then ``0001``.
* ``downgrade`` runs the migrations' own downgrades (``airflow db-manager downgrade``), rather
  than raising ``NotImplementedError``.
* ``airflow db reset`` drops the tables with Airflow's: their rows name controller runs that no
  longer exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.utils.db_manager import BaseDBManager

from backfill_controller.db.tables import metadata

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

PACKAGE_DIR = Path(__file__).parent
ALEMBIC_INI = PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
VERSION_TABLE = "backfill_controller_alembic_version"


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic configuration of the plugin's migrations; with ``connection``, they run on it
    (its transaction, if it is in one), else on Airflow's configured metadata database."""
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(connection: Connection, revision: str = "heads") -> None:
    """Run the plugin's migrations on ``connection`` up to ``revision`` (every one by default).

    For tests and tools that hold a connection of their own; Airflow runs them through
    :class:`BackfillControllerDBManager`.
    """
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


class BackfillControllerDBManager(BaseDBManager):
    """The plugin's tables, for ``airflow db migrate``, ``reset`` and ``check-migrations``."""

    metadata = metadata
    version_table_name = VERSION_TABLE
    migration_dir = str(MIGRATIONS_DIR)
    alembic_file = str(ALEMBIC_INI)
    supports_table_dropping = True
    #: The plugin's release -> its head revision, for ``airflow db-manager migrate|downgrade
    #: --to-version``.
    revision_heads_map = {"0.2.0": "0003"}

    def get_alembic_config(self) -> Config:
        from airflow import settings

        if not settings.SQL_ALCHEMY_CONN:
            raise RuntimeError("Airflow's metadata database is not configured ([database] sql_alchemy_conn)")
        config = alembic_config()
        config.set_main_option("sqlalchemy.url", settings.SQL_ALCHEMY_CONN.replace("%", "%%"))
        return config

    def create_db_from_orm(self) -> None:
        """Make the tables, through the migrations as every other path does."""
        self.upgradedb()

    def initdb(self, use_migration_files: bool = False) -> None:
        """Make the tables (``airflow db migrate`` on a fresh database, ``airflow db reset``).

        ``use_migration_files`` is accepted for Airflow's signature: the migrations always run.
        """
        self.upgradedb()

    def upgradedb(
        self,
        to_revision: str | None = None,
        from_revision: str | None = None,
        show_sql_only: bool = False,
        use_migration_files: bool = False,
    ) -> None:
        """Run the migrations up to ``to_revision`` (the head by default), adopting tables made on
        first use by earlier versions; with ``show_sql_only``, print their SQL from
        ``from_revision`` (the database's by default) instead."""
        from alembic import command

        if from_revision and not show_sql_only:
            raise ValueError("`from_revision` only goes with `show_sql_only`")
        self._release_metadata_locks_if_needed()
        config = self.get_alembic_config()
        target = to_revision or "heads"
        if show_sql_only:
            start = from_revision or self.get_current_revision()
            command.upgrade(config, f"{start}:{target}" if start else target, sql=True)
            return
        self.log.info(
            "Migrating the Backfill Controller's tables from revision %s", self.get_current_revision()
        )
        self._release_metadata_locks_if_needed()  # MySQL: the revision read above took them again
        command.upgrade(config, target)
        self.log.info("The Backfill Controller's tables are at revision %s", self.get_current_revision())

    def downgrade(self, to_revision: Any, from_revision: Any = None, show_sql_only: bool = False) -> None:
        """Run the migrations' downgrades down to ``to_revision`` (``base`` drops the tables and
        their rows); with ``show_sql_only``, print their SQL from ``from_revision`` instead."""
        from alembic import command

        if from_revision and not show_sql_only:
            raise ValueError("`from_revision` only goes with `show_sql_only`")
        config = self.get_alembic_config()
        if show_sql_only:  # from the database's revision, else (none yet) from the head
            start = (
                from_revision
                or self.get_current_revision()
                or self.get_script_object(config).get_current_head()
            )
            command.downgrade(config, f"{start}:{to_revision}", sql=True)
            return
        self._release_metadata_locks_if_needed()
        command.downgrade(config, to_revision)
