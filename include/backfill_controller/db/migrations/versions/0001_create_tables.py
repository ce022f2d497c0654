"""Create the plugin's tables, or adopt those an earlier version made on first use.

Revision ID: 0001
Revises:
Create Date: 2026-12-07

Before it had migrations, the plugin created its tables on first use, in the api-server, so a
database may already hold some or all of them, with their rows, and no version. Each table
present with exactly this revision's columns is kept as it is; each missing one is created; a
table of another shape stops the migration, naming its columns (the plugin did not make it).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger(__name__)

LEDGER = "backfill_controller_ledger"
HISTORY = "backfill_controller_history"
OUTCOME = "backfill_controller_outcome"
HISTORY_INDEX = "ix_backfill_controller_history_controller_run_id"

#: Each table's columns at this revision: what the first-use creation made.
COLUMNS = {
    LEDGER: (
        "id",
        "controller_run_id",
        "target_dag_id",
        "requester",
        "span_first",
        "span_last",
        "run_ids",
        "recorded_at",
    ),
    HISTORY: ("id", "controller_run_id", "action", "actor", "at", "detail"),
    OUTCOME: ("id", "controller_run_id", "clear_number", "summary", "run_states", "recorded_at"),
}


def _present() -> set[str]:
    """The tables already there (none when only printing the SQL), each of this revision's shape."""
    if context.is_offline_mode():
        return set()
    inspector = sa.inspect(op.get_bind())
    present = set(COLUMNS) & set(inspector.get_table_names())
    for name in sorted(present):
        found = {column["name"] for column in inspector.get_columns(name)}
        expected = set(COLUMNS[name])
        if found != expected:
            raise RuntimeError(
                f"Table {name} exists with other columns than the Backfill Controller's "
                f"(missing: {', '.join(sorted(expected - found)) or 'none'}; "
                f"unexpected: {', '.join(sorted(found - expected)) or 'none'}), so the plugin did not "
                "make it. Rename or drop it, then run `airflow db migrate` again."
            )
    if present:
        log.info("Keeping %s as an earlier version made them, with their rows", ", ".join(sorted(present)))
    return present


def upgrade() -> None:
    present = _present()
    if LEDGER not in present:
        op.create_table(
            LEDGER,
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("controller_run_id", sa.String(length=250), nullable=False),
            sa.Column("target_dag_id", sa.String(length=250), nullable=False),
            sa.Column("requester", sa.String(length=512), nullable=True),
            sa.Column("span_first", sa.String(length=40), nullable=True),
            sa.Column("span_last", sa.String(length=40), nullable=True),
            sa.Column("run_ids", sa.Text(), nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("controller_run_id"),
        )
    if HISTORY not in present:
        op.create_table(
            HISTORY,
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("controller_run_id", sa.String(length=250), nullable=False),
            sa.Column("action", sa.String(length=20), nullable=False),
            sa.Column("actor", sa.String(length=512), nullable=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("detail", sa.Text(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index(HISTORY_INDEX, HISTORY, ["controller_run_id"], unique=False)
    if OUTCOME not in present:
        op.create_table(
            OUTCOME,
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("controller_run_id", sa.String(length=250), nullable=False),
            sa.Column("clear_number", sa.Integer(), nullable=False),
            sa.Column("summary", sa.Text(), nullable=False),
            sa.Column("run_states", sa.Text(), nullable=False),
            sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("controller_run_id"),
        )


def downgrade() -> None:
    op.drop_table(OUTCOME)
    op.drop_index(HISTORY_INDEX, table_name=HISTORY)
    op.drop_table(HISTORY)
    op.drop_table(LEDGER)
