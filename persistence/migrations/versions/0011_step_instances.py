"""Attempts and dispatch rows keyed by step instance: a step in a loop's body runs once per
iteration, and its attempts carry the iteration in their `step_id`
(`verify_receipt@verify_lines:3`, `engine.instances`), longer than a step id.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("step_attempts", "dispatch_queue")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite does not enforce a VARCHAR's length
    for table in TABLES:
        op.alter_column(table, "step_id", type_=sa.String(400), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.alter_column(table, "step_id", type_=sa.String(63), existing_nullable=False)
