"""The plugin's own tables in Airflow's metadata database, as the code reads and writes them.

``airflow db migrate`` makes them, and changes them, with the migrations in ``migrations/versions``
(:class:`backfill_controller.db.manager.BackfillControllerDBManager`); no request creates a
table. A change here needs a migration that makes it (``docs/development.md``):
``tests/unit/test_db_migrations.py`` fails while the migrations and these declarations differ.
What the rows mean: :mod:`backfill_controller.server.ledger`.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: One row per backfill, its record, as authorized: who asked, for which target, the span of its
#: dates, the target runs it acts on (JSON list of run ids), the normalized request (JSON,
#: immutable once planned), how many segments it has, when the requester's rights were checked, and
#: the token in its continuation runs' ids (unguessable: nobody takes such a run id before it).
#: ``id`` is the backfill's own id; ``controller_run_id`` names its head run, which a user may
#: delete and re-create: what binds a controller run to the record is :data:`runs`.
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
    Column("request", Text, nullable=True),
    Column("segments", Integer, nullable=True),
    Column("authorized_at", DateTime(timezone=True), nullable=True),
    Column("segment_token", String(16), nullable=True),
)

#: The controller runs a backfill was created with: its head (segment 0) and each continuation,
#: bound by ``DagRun.id`` (never reused, unlike a run_id) and ``clear_number`` (a cleared run is
#: not the run the record was made for), with the run's execution (JSON) once planned, and its
#: report (JSON: its part of the result) and when its ``report`` task began, once it did.
runs = Table(
    "backfill_controller_run",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "backfill_id",
        Integer,
        ForeignKey("backfill_controller_ledger.id", name="backfill_controller_run_backfill_fkey"),
        nullable=False,
    ),
    Column("segment", Integer, nullable=False),
    Column("dag_run_pk", Integer, nullable=False, unique=True),
    Column("run_id", String(250), nullable=False),
    Column("clear_number", Integer, nullable=False),
    Column("execution", Text, nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("report", Text, nullable=True),
    Column("reported_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("backfill_id", "segment", name="backfill_controller_run_segment_key"),
)

#: What each ``trigger`` task instance of a bound run has acted on (JSON
#: :class:`backfill_controller.domain.state.ChunkRecord`), one row per chunk, replaced as it goes.
chunks = Table(
    "backfill_controller_chunk",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        Integer,
        ForeignKey("backfill_controller_run.id", name="backfill_controller_chunk_run_fkey"),
        nullable=False,
    ),
    Column("chunk", Integer, nullable=False),
    Column("record", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "chunk", name="backfill_controller_chunk_key"),
)

#: Why a controller run got no work (refused, or stopped before it planned), by ``DagRun.id``.
refusals = Table(
    "backfill_controller_refusal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dag_run_pk", Integer, nullable=False, unique=True),
    Column("run_id", String(250), nullable=False),
    Column("message", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

#: One row per date of a backfill, in run order (``position``): its segment, logical date, what the
#: backfill does to it (``action``), the target run that carries it, and its whole plan (JSON,
#: :class:`backfill_controller.domain.plan.DatePlan`). Tasks receive their dates from here.
dates = Table(
    "backfill_controller_date",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "backfill_id",
        Integer,
        ForeignKey("backfill_controller_ledger.id", name="backfill_controller_date_backfill_fkey"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),
    Column("segment", Integer, nullable=False),
    Column("logical_date", String(40), nullable=False),
    Column("action", String(20), nullable=False),
    Column("target_run_id", String(250), nullable=True),
    Column("plan", Text, nullable=False),
    UniqueConstraint("backfill_id", "position", name="backfill_controller_date_position_key"),
    Index("ix_backfill_controller_date_segment", "backfill_id", "segment", "position"),
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
