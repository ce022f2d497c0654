"""What a backfill's runs did, kept in its record: chunks, reports, refusals.

Each chunk's account of what it acted on, each segment's report, whether the report ran, and why a
controller run was refused.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

Adds ``backfill_controller_chunk`` (one row per ``trigger`` task instance of a bound run: what it
has acted on), ``report`` and ``reported_at`` to ``backfill_controller_run``, and
``backfill_controller_refusal`` (why a controller run got no work, by ``DagRun.id``). Before it,
the page read these from the controller's XComs and task instances, which a user may rewrite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RUNS = "backfill_controller_run"
CHUNKS = "backfill_controller_chunk"
REFUSALS = "backfill_controller_refusal"


def upgrade() -> None:
    with op.batch_alter_table(RUNS) as batch:
        batch.add_column(sa.Column("report", sa.Text(), nullable=True))
        batch.add_column(sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        CHUNKS,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], [f"{RUNS}.id"], name="backfill_controller_chunk_run_fkey"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "chunk", name="backfill_controller_chunk_key"),
    )
    op.create_table(
        REFUSALS,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dag_run_pk", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dag_run_pk"),
    )


def downgrade() -> None:
    op.drop_table(REFUSALS)
    op.drop_table(CHUNKS)
    with op.batch_alter_table(RUNS) as batch:
        batch.drop_column("reported_at")
        batch.drop_column("report")
