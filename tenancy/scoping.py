"""The application wall of tenant isolation, installed on the ORM session class.

Every ORM statement that touches a `TenantOwned` model is filtered by the session's
tenant; new rows take it; a tenant-owned statement in a session without a tenant
raises instead of returning every tenant's rows. On PostgreSQL each transaction also
sets `app.tenant_id` (transaction-local), which the row-level security policies read.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, with_loader_criteria
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.selectable import FromClause
from sqlalchemy.sql.util import find_tables

from foundation.database import SCOPE_KEY as TENANT_KEY
from foundation.orm import Base, TenantOwned
from tenancy.context import TenantId


class MissingTenantScope(RuntimeError):
    """A tenant-owned statement ran in a session bound to no tenant: a programming error."""


class TenantScopedSession(Session):
    """A session confined to `info[TENANT_KEY]`, or to nothing tenant-owned when that is None."""


def session_tenant(session: Session) -> TenantId | None:
    tenant: TenantId | None = session.info.get(TENANT_KEY)
    return tenant


def _tenant_owned_tables() -> set[FromClause]:
    """Tables of the models that declare themselves `TenantOwned`."""
    return {
        mapper.local_table
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantOwned)
    }


def _owned_tables(state: ORMExecuteState) -> list[str]:
    """Tenant-owned tables the statement reads or writes, however it names them."""
    statement = cast(ClauseElement, state.statement)
    touched: set[object] = set(find_tables(statement, check_columns=True, include_crud=True))
    touched.update(mapper.local_table for mapper in state.all_mappers)
    return sorted(str(table) for table in _tenant_owned_tables() if table in touched)


def _inserted_tenants(state: ORMExecuteState) -> set[object]:
    """Tenant ids an INSERT writes: from its bulk parameters, else from its own VALUES."""
    parameters = state.parameters
    if parameters:
        rows: list[Any] = parameters if isinstance(parameters, list) else [parameters]
        return {row["tenant_id"] for row in rows if row.get("tenant_id") is not None}
    # A multi-row VALUES binds later rows as tenant_id_m1, tenant_id_m2, ...
    bound = cast(ClauseElement, state.statement).compile().params
    return {
        value
        for key, value in bound.items()
        if (key == "tenant_id" or key.startswith("tenant_id_m")) and value is not None
    }


@event.listens_for(TenantScopedSession, "do_orm_execute")
def _confine_statement(state: ORMExecuteState) -> None:
    if state.is_column_load or state.is_relationship_load:
        return  # their parent statement was already confined
    owned = _owned_tables(state)
    if not owned:
        return
    tenant = session_tenant(state.session)
    if tenant is None:
        raise MissingTenantScope(
            f"statement on tenant-owned {', '.join(owned)} outside a tenant scope"
        )
    if state.is_insert:
        if _inserted_tenants(state) - {tenant}:
            raise MissingTenantScope("insert names another tenant")
    elif state.is_select or state.is_update or state.is_delete:
        state.statement = state.statement.options(
            with_loader_criteria(
                TenantOwned,
                lambda cls: cls.tenant_id == tenant,
                include_aliases=True,
            )
        )


@event.listens_for(TenantScopedSession, "before_flush")
def _stamp_rows(session: Session, flush_context: Any, instances: Any) -> None:
    tenant = session_tenant(session)
    for row in [*session.new, *session.dirty, *session.deleted]:
        if not isinstance(row, TenantOwned):
            continue
        if tenant is None:
            raise MissingTenantScope(f"flushing {type(row).__name__} outside a tenant scope")
        if row in session.new and row.tenant_id is None:
            row.tenant_id = tenant
        elif row.tenant_id != tenant:
            raise MissingTenantScope(f"{type(row).__name__} belongs to another tenant")


@event.listens_for(TenantScopedSession, "after_begin")
def _bind_database_tenant(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    if connection.dialect.name != "postgresql":
        return
    # is_local=true: the setting dies with the transaction, so a pooled connection
    # never carries one tenant's id into another tenant's work.
    connection.execute(
        text("SELECT set_config('app.tenant_id', :tenant, true)"),
        {"tenant": session_tenant(session) or ""},
    )
