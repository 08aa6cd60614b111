"""Which workers' lane a dispatch row's task goes to: steps that await I/O have their own.

A step of an I/O-bound tool is published to the I/O lane's queue (`workers.io_lane`); the
sweeper, which publishes overdue rows again, reads the lane from the row. Rows written
before this revision take the main queue, whose tasks run any step.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "dispatch_queue",
        sa.Column("awaits_io", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("dispatch_queue", "awaits_io")
