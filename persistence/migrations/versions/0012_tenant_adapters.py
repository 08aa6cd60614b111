"""The custom adapters enabled for each tenant: installed `wfe.tools` adapters its workflows'
`custom` steps may call (Enterprise).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("adapters", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    op.drop_column("tenants", "adapters")
