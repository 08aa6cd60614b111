"""A tenant's own workflow templates (Enterprise), with row-level security.

Keyed by (tenant_id, id): every tenant has its own namespace of template ids. The
definition is a copy of the workflow it was saved from, so there is no foreign key to
`workflows`; the source is kept for reference only.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from persistence.rls import disable_tenant_rls, enable_tenant_rls

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLE = "workflow_templates"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("tenant_id", sa.String(63), nullable=False),
        sa.Column("id", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("source_workflow_id", sa.String(36), nullable=False),
        sa.Column("source_version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            ondelete="CASCADE",
            name="fk_workflow_templates_tenant_id_tenants",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name="pk_workflow_templates"),
    )
    op.create_index("ix_workflow_templates_tenant_id", TABLE, ["tenant_id"])
    if op.get_bind().dialect.name == "postgresql":
        enable_tenant_rls(TABLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        disable_tenant_rls(TABLE)
    op.drop_table(TABLE)
