"""The plugin's own tables in Airflow's metadata database, as the code reads and writes them.

``airflow db migrate`` makes them, and changes them, with the migrations in ``migrations/versions``
(:class:`backfill_controller.db.manager.BackfillControllerDBManager`); no request creates a
table. A change here needs a migration that makes it (``docs/development.md``):
``tests/unit/test_db_migrations.py`` fails while the migrations and these declarations differ.
What the rows mean: :mod:`backfill_controller.server.ledger`.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text

metadata = MetaData()

#: One row per backfill (its head controller run), as authorized: who asked, for which target,
#: the span of its dates and the target runs it acts on (JSON list of run ids).
ledger = Table(
    "backfill_controller_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("controller_run_id", String(250), nullable=False, unique=True),
    Column("target_dag_id", String(250), nullable=False),
    Column("requester", String(512), nullable=True),
    Column("span_first", String(40), nullable=True),
    Column("span_last", String(40), nullable=True),
    Column("run_ids", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

#: What users did to each backfill (pause, resume, cancel, re-run failed): who, when, and what
#: came of it (:mod:`backfill_controller.domain.controls`), oldest first by ``id``.
history = Table(
    "backfill_controller_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("controller_run_id", String(250), nullable=False, index=True),
    Column("action", String(20), nullable=False),
    Column("actor", String(512), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("detail", Text, nullable=True),
)

#: How a backfill ended, written when its report runs: what the page says of its dates (counts and
#: span, JSON) and the state of each of its target runs then (JSON ``{run_id: state}``), for the
#: controller run as it was (``clear_number``: clearing the run makes the outcome stale).
outcome = Table(
    "backfill_controller_outcome",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("controller_run_id", String(250), nullable=False, unique=True),
    Column("clear_number", Integer, nullable=False),
    Column("summary", Text, nullable=False),
    Column("run_states", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
