"""An execution's `steps` record and `outputs` as `jsonb` on PostgreSQL, changed path by path.

Each step changes one entry of the record and adds one output; the engine writes just those
paths (`jsonb_set`, `engine.patches`) instead of the whole documents, so a step of a long
execution costs what the first one did. SQLite keeps text and changes it with `json_set`.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = ("steps", "outputs")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    changes = ", ".join(f"ALTER COLUMN {name} TYPE jsonb USING {name}::jsonb" for name in COLUMNS)
    op.execute(f"ALTER TABLE executions {changes}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    changes = ", ".join(f"ALTER COLUMN {name} TYPE json USING {name}::json" for name in COLUMNS)
    op.execute(f"ALTER TABLE executions {changes}")
