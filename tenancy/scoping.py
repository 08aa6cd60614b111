"""The application wall of tenant isolation, installed on the ORM session class.

On SQLite it is the only wall; on PostgreSQL row-level security stands behind it (each
transaction sets `app.tenant_id`, transaction-local, which the policies read), and the
wall refuses the same statements there. It applies to every statement that touches a
`TenantOwned` table, whether it names the model, its Core `Table`, an alias of either
or a lightweight `table()` of the same name:

- Without a tenant in the session, it raises `MissingTenantScope`.
- Reads see the session's tenant's rows only. ORM entities get `with_loader_criteria`
  (added only when the statement names a tenant-owned table through the ORM);
  the loader criteria miss Core tables, so every SELECT, UPDATE and DELETE naming one
  gets `tenant_id = :tenant` in its WHERE, or in the ON clause when the table is the
  nullable side of an outer join (a `Select.join` must then give ON explicitly). A FULL
  OUTER JOIN cannot be confined either way and is refused, for ORM entities too. An
  upsert's DO UPDATE gets the same WHERE (on PostgreSQL, RLS raises first), and an ORM
  UPDATE by primary key (executemany), which ignores loader criteria, gets it as well;
  SQLAlchemy takes that only with `synchronize_session=None`, so it is refused without.
- Writes name the session's tenant only. Every value an INSERT or UPDATE of a
  tenant-owned table may give `tenant_id` (VALUES, multi-row VALUES, SET, ordered SET,
  ON CONFLICT DO UPDATE SET, executemany parameters, a parameter overriding a bound
  value) must be a plain or bound value equal to the tenant. Any other SQL expression
  (a function, a cast, a subquery, a column, `text()`) is refused even when it would
  yield the tenant: it cannot be proven before it runs. For the same reason INSERT ...
  FROM SELECT must name `tenant_id` and select a bound literal equal to the tenant from
  a plain SELECT; a selected column, a UNION or textual SELECT is refused. The rest of
  that SELECT is confined like any read.
- Rows added to the session take its tenant at flush; a flushed row of another tenant
  raises.

A statement declared `prebuilt` (built once, bound parameters for what varies) is surveyed
once and confined once per tenant, its confined copy kept; what it writes to tenant_id is
still checked at every run, from that run's parameters.

A whole `text()` statement is opaque and passes unchecked: only migrations and explicit
owner functions use raw SQL, and on PostgreSQL RLS still applies to it. So does anything
run on `session.connection()`, which bypasses the session's events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, with_loader_criteria
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from foundation.database import SCOPE_KEY as TENANT_KEY
from foundation.orm import TenantOwned
from tenancy.confinement import CoreConfinement
from tenancy.context import TenantId
from tenancy.statements import (
    MissingTenantScope,
    Survey,
    owned_name,
    parameter_rows,
    refuse_foreign_writes,
    survey,
    tenant_owned_names,
)

__all__ = [
    "BIND_DATABASE_TENANT",
    "TENANT_KEY",
    "MissingTenantScope",
    "TenantScopedSession",
    "session_tenant",
]

BIND_DATABASE_TENANT = text("SELECT set_config('app.tenant_id', :tenant, true)")
"""Sets the tenant row-level security reads (PostgreSQL), for the rest of the transaction:
is_local=true, so a pooled connection never carries one tenant's id into another's work."""


class TenantScopedSession(Session):
    """A session confined to `info[TENANT_KEY]`, or to nothing tenant-owned when that is None."""


def session_tenant(session: Session) -> TenantId | None:
    tenant: TenantId | None = session.info.get(TENANT_KEY)
    return tenant


def _is_update_by_primary_key(state: ORMExecuteState) -> bool:
    """An ORM UPDATE with executemany parameters, which the loader criteria miss.

    It is confined by an added WHERE, which SQLAlchemy accepts only unsynchronized.
    """
    if not (state.is_orm_statement and state.is_update and state.is_executemany):
        return False
    if state.execution_options.get("synchronize_session", "evaluate") not in (None, False):
        raise MissingTenantScope(
            "an ORM UPDATE by primary key of tenant-owned rows is confined by an added "
            "WHERE: pass execution_options(synchronize_session=None)"
        )
    return True


def _confine_reads(statement: Any, tenant: TenantId) -> Any:
    return statement.options(
        with_loader_criteria(
            TenantOwned,
            lambda cls: cls.tenant_id == tenant,
            include_aliases=True,
        )
    )


@dataclass(slots=True)
class _Confined:
    """A statement's survey, and the statement confined to each tenant it ran for."""

    statement: object
    found: Survey
    owned: frozenset[str]
    by_tenant: dict[TenantId, Executable] = field(default_factory=dict)


_prebuilt: dict[int, _Confined] = {}
"""Statements built once and run many times, by id (each is kept alive here, so its id
is never reused): surveyed once and confined once per tenant, so that running one finds
its compiled form in the cache with no walk and no rewrite."""

CONFINED_TENANTS_KEPT: Final = 256
"""Confined copies kept per prebuilt statement; past that they are made again."""


S = TypeVar("S", bound=Executable)


def prebuilt(statement: S) -> S:
    """Declare `statement` (a module constant, with bound parameters for what varies) to
    be run many times: its confinement is worked out once per tenant, not at every run."""
    _prebuilt.setdefault(id(statement), _Confined(statement, Survey(), frozenset()))
    return statement


def _survey(statement: ClauseElement, state: ORMExecuteState) -> _Confined:
    owned = tenant_owned_names()
    known = _prebuilt.get(id(statement))
    if known is not None and known.statement is statement and known.owned is owned:
        return known
    found = survey(statement, owned)
    mapped = [owned_name(mapper.local_table, owned) for mapper in state.all_mappers]
    found.owned.update(name for name in mapped if name is not None)
    found.orm_covered |= any(name is not None for name in mapped)
    surveyed = _Confined(statement, found, owned)
    if known is not None and known.statement is statement:
        _prebuilt[id(statement)] = surveyed
    return surveyed


@event.listens_for(TenantScopedSession, "do_orm_execute")
def _confine_statement(state: ORMExecuteState) -> None:
    if state.is_column_load or state.is_relationship_load:
        return  # their parent statement was already confined
    statement = cast(ClauseElement, state.statement)
    confined = _survey(statement, state)
    found = confined.found
    if not found.owned:
        return
    tenant = session_tenant(state.session)
    if tenant is None:
        raise MissingTenantScope(
            f"statement on tenant-owned {', '.join(sorted(found.owned))} outside a tenant scope"
        )
    if found.full_join:
        raise MissingTenantScope("a FULL OUTER JOIN on tenant-owned tables cannot be confined")
    refuse_foreign_writes(found.writes, tenant, parameter_rows(state))
    by_primary_key = _is_update_by_primary_key(state)
    ready = None if by_primary_key else confined.by_tenant.get(tenant)
    if ready is None:
        ready = state.statement
        if found.needs_rewrite or by_primary_key:
            ready = cast(Executable, CoreConfinement(tenant, confined.owned).confine(statement))
        if found.orm_covered:  # the ORM's entities: its loader criteria
            ready = _confine_reads(ready, tenant)
        if id(statement) in _prebuilt and not by_primary_key:
            if len(confined.by_tenant) >= CONFINED_TENANTS_KEPT:
                confined.by_tenant.clear()
            confined.by_tenant[tenant] = ready
    state.statement = ready


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
    if connection.dialect.name != "postgresql" or transaction.nested:
        return  # a savepoint keeps its transaction's setting
    connection.execute(BIND_DATABASE_TENANT, {"tenant": session_tenant(session) or ""})
