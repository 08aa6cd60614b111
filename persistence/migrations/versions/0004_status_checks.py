"""CHECK constraints: status columns hold only their enum's values.

`executions.status`, `step_attempts.status` and `dispatch_queue.state` were free
strings; the models now declare them as `persistence.models.statuses` enums, stored
as the same lower-case values, and the database refuses anything else. The values
are written out here, not read from the enums: a migration describes the schema of
its day, and a later change to an enum comes with its own migration.

SQLite cannot add a constraint to a table, so there each table is rebuilt (batch
mode copies the rows, indexes and foreign keys); PostgreSQL adds them in place.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (table, column, allowed values). Each constraint is named ck_<table>_<column>, the
# name the naming convention in foundation/orm.py gives the models' own.
CHECKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "executions",
        "status",
        ("queued", "pending", "in_progress", "completed", "failed", "cancelled"),
    ),
    ("step_attempts", "status", ("scheduled", "running", "completed", "failed", "cancelled")),
    ("dispatch_queue", "state", ("due", "waiting", "running")),
)


def upgrade() -> None:
    for table, column, values in CHECKS:
        allowed = ", ".join(f"'{value}'" for value in values)
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(op.f(f"ck_{table}_{column}"), f"{column} IN ({allowed})")


def downgrade() -> None:
    for table, column, _ in reversed(CHECKS):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
