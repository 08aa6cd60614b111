"""Test runs (TestExecute): executions marked `test`, of a saved workflow or of an inline
definition (no workflow row: `workflow_id` may be null), whose attempts keep a `trace`
(the resolved input, the conditions evaluated and the values they saw, the log lines).

SQLite cannot drop a NOT NULL in place: the table is rebuilt (batch mode copies the rows,
indexes, constraints and foreign keys).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("test", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.alter_column("workflow_id", existing_type=sa.String(36), nullable=True)
    op.add_column("step_attempts", sa.Column("trace", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("step_attempts", "trace")
    op.execute("DELETE FROM executions WHERE workflow_id IS NULL")
    with op.batch_alter_table("executions") as batch:
        batch.alter_column("workflow_id", existing_type=sa.String(36), nullable=False)
        batch.drop_column("test")
