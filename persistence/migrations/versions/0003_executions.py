"""Executions, step attempts (with row-level security) and the dispatch queue.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TENANT_TABLES = ("executions", "step_attempts")


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], ondelete="CASCADE", name=f"fk_{table}_tenant_id_tenants"
    )


def _execution_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["execution_id"],
        ["executions.id"],
        ondelete="CASCADE",
        name=f"fk_{table}_execution_id_executions",
    )


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "executions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("workflow_id", sa.String(36), nullable=False),
        sa.Column("workflow_version", sa.BigInteger(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("current_step", sa.String(63), nullable=True),
        sa.Column("resume_from", sa.String(63), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("holds_slot", sa.Boolean(), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("started_at", timestamp, nullable=True),
        sa.Column("completed_at", timestamp, nullable=True),
        sa.Column("deadline_at", timestamp, nullable=True),
        sa.Column("updated_at", timestamp, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("rerun_of", sa.String(36), nullable=True),
        sa.Column("rerun_from_step", sa.String(63), nullable=True),
        sa.Column("cancelled_by", sa.String(200), nullable=True),
        _tenant_fk("executions"),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            ondelete="CASCADE",
            name="fk_executions_workflow_id_workflows",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_executions"),
        sa.UniqueConstraint("tenant_id", "request_id", name="uq_executions_tenant_request"),
    )
    op.create_index("ix_executions_tenant_id", "executions", ["tenant_id"])
    op.create_index("ix_executions_tenant_listing", "executions", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_executions_tenant_status", "executions", ["tenant_id", "status", "created_at"]
    )
    op.create_index(
        "ix_executions_tenant_workflow", "executions", ["tenant_id", "workflow_id", "created_at"]
    )
    op.create_table(
        "step_attempts",
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("step_id", sa.String(63), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("due_at", timestamp, nullable=False),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("started_at", timestamp, nullable=True),
        sa.Column("finished_at", timestamp, nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("task_id", sa.String(64), nullable=True),
        _tenant_fk("step_attempts"),
        _execution_fk("step_attempts"),
        sa.PrimaryKeyConstraint("execution_id", "step_id", "attempt", name="pk_step_attempts"),
    )
    op.create_index("ix_step_attempts_tenant_id", "step_attempts", ["tenant_id"])
    op.create_table(
        "dispatch_queue",
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("step_id", sa.String(63), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("fire_at", timestamp, nullable=False),
        sa.Column("lease_until", timestamp, nullable=True),
        sa.Column("published_at", timestamp, nullable=True),
        sa.Column("publishes", sa.SmallInteger(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        _execution_fk("dispatch_queue"),
        sa.PrimaryKeyConstraint("execution_id", "step_id", "attempt", name="pk_dispatch_queue"),
    )
    op.create_index("ix_dispatch_queue_fire_at", "dispatch_queue", ["fire_at"])
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            enable_tenant_rls(table)
        # The retention purge visits every tenant; the service role sees none without a
        # tenant set. This function (run as the owner) tells it the ids, and nothing else.
        op.execute(
            "CREATE FUNCTION wfe_tenant_ids() RETURNS SETOF text LANGUAGE sql STABLE "
            "SECURITY DEFINER SET search_path = public AS $$ SELECT id FROM tenants ORDER BY id $$"
        )
        op.execute("REVOKE ALL ON FUNCTION wfe_tenant_ids() FROM PUBLIC")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS wfe_tenant_ids()")
        for table in TENANT_TABLES:
            disable_tenant_rls(table)
    op.drop_table("dispatch_queue")
    op.drop_table("step_attempts")
    op.drop_table("executions")
