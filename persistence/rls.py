"""Row-level security for tenant-owned tables (PostgreSQL), used by migrations.

Policies read the transaction-local `app.tenant_id`; when it is unset or empty
they match nothing, so a connection that forgot its tenant sees no rows at all.
"""

from __future__ import annotations

from alembic import op

TENANT_PREDICATE = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')"


def enable_tenant_rls(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})"
    )


def disable_tenant_rls(table: str) -> None:
    op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
