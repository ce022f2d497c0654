"""A backfill is one record: its request, its controller runs bound by DagRun.id, its dates.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Adds to the ledger the normalized request, the number of segments, when the requester's rights
were checked and the token of its continuation runs' ids; adds ``backfill_controller_run`` (the
controller runs bound to a backfill by ``DagRun.id`` and ``clear_number``) and
``backfill_controller_date`` (one row per date, with its plan). Rows of earlier backfills keep
what they had: the new ledger columns stay empty for them, and such a backfill has no bound run,
so its controller run, if run again, is authorized afresh.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LEDGER = "backfill_controller_ledger"
RUNS = "backfill_controller_run"
DATES = "backfill_controller_date"


def upgrade() -> None:
    with op.batch_alter_table(LEDGER) as batch:
        batch.add_column(sa.Column("request", sa.Text(), nullable=True))
        batch.add_column(sa.Column("segments", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("authorized_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("segment_token", sa.String(length=16), nullable=True))
    op.create_table(
        RUNS,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("backfill_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("dag_run_pk", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=250), nullable=False),
        sa.Column("clear_number", sa.Integer(), nullable=False),
        sa.Column("execution", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["backfill_id"], [f"{LEDGER}.id"], name="backfill_controller_run_backfill_fkey"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dag_run_pk"),
        sa.UniqueConstraint("backfill_id", "segment", name="backfill_controller_run_segment_key"),
    )
    op.create_table(
        DATES,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("backfill_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("logical_date", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("target_run_id", sa.String(length=250), nullable=True),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["backfill_id"], [f"{LEDGER}.id"], name="backfill_controller_date_backfill_fkey"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("backfill_id", "position", name="backfill_controller_date_position_key"),
    )
    op.create_index("ix_backfill_controller_date_segment", DATES, ["backfill_id", "segment", "position"])


def downgrade() -> None:
    op.drop_index("ix_backfill_controller_date_segment", table_name=DATES)
    op.drop_table(DATES)
    op.drop_table(RUNS)
    with op.batch_alter_table(LEDGER) as batch:
        batch.drop_column("segment_token")
        batch.drop_column("authorized_at")
        batch.drop_column("segments")
        batch.drop_column("request")
