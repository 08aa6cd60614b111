"""Notifications per user of a tenant, their preferences, and the projection cursor.

`notifications` and `notification_preferences` are tenant rows under row-level security.
`projections` holds one position per handler that follows the event log across tenants
(ids only), so a handler resumes where it stopped and no event between is left out.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TENANT_TABLES = ("notifications", "notification_preferences")


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name=f"fk_{table}_tenant_id_tenants"
    )


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    identifier = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "notifications",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("id", identifier, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("workflow_id", sa.String(36), nullable=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("read_at", timestamp, nullable=True),
        _tenant_fk("notifications"),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_notifications_tenant_id", "notifications", ["tenant_id"])
    op.create_index(
        "uq_notifications_source",
        "notifications",
        ["tenant_id", "user_id", "kind", "event_id"],
        unique=True,
    )
    op.create_index("ix_notifications_tenant_user", "notifications", ["tenant_id", "user_id", "id"])
    op.create_table(
        "notification_preferences",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),
        sa.Column("on_completed", sa.Boolean(), nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        _tenant_fk("notification_preferences"),
        sa.PrimaryKeyConstraint("tenant_id", "user_id", name="pk_notification_preferences"),
    )
    op.create_index(
        "ix_notification_preferences_tenant_id", "notification_preferences", ["tenant_id"]
    )
    op.create_table(
        "projections",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_projections"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            enable_tenant_rls(table)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            disable_tenant_rls(table)
    op.drop_table("projections")
    op.drop_table("notification_preferences")
    op.drop_table("notifications")
