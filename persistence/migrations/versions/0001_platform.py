"""Platform tables: tenants, usage counters and the event log, with row-level security.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tier", sa.String(20), nullable=False),
        sa.Column("limit_overrides", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.create_table(
        "usage_counters",
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("metric", sa.String(40), nullable=False),
        sa.Column("window", sa.String(10), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            ondelete="CASCADE",
            name="fk_usage_counters_tenant_id_tenants",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "metric", "window", name="pk_usage_counters"),
    )
    op.create_index("ix_usage_counters_tenant_id", "usage_counters", ["tenant_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("workflow_id", sa.String(64), nullable=True),
        sa.Column("execution_id", sa.String(64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name="fk_events_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sqlite_autoincrement=True,  # ids never reused, even after the newest rows are purged
    )
    op.create_index("ix_events_tenant_id", "events", ["tenant_id"])
    op.create_index("ix_events_tenant_workflow", "events", ["tenant_id", "workflow_id", "id"])
    op.create_index("ix_events_tenant_execution", "events", ["tenant_id", "execution_id", "id"])

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE tenants ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE tenants FORCE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY tenant_self ON tenants "
            "USING (id = NULLIF(current_setting('app.tenant_id', true), ''))"
        )
        # The registry is administered by the migrating (owner) role, e.g. `wfe tenant list`.
        op.execute(
            "CREATE POLICY tenant_registry ON tenants TO CURRENT_USER "
            "USING (true) WITH CHECK (true)"
        )
        for table in ("usage_counters", "events"):
            enable_tenant_rls(table)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("usage_counters", "events"):
            disable_tenant_rls(table)
    op.drop_table("events")
    op.drop_table("usage_counters")
    op.drop_table("tenants")
