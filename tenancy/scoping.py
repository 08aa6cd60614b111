"""The application wall of tenant isolation, installed on the ORM session class.

On SQLite it is the only wall; on PostgreSQL row-level security stands behind it (each
transaction sets `app.tenant_id`, transaction-local, which the policies read), and the
wall refuses the same statements there. It applies to every statement that touches a
`TenantOwned` table, whether it names the model, its Core `Table`, an alias of either
or a lightweight `table()` of the same name:

- Without a tenant in the session, it raises `MissingTenantScope`.
- Reads see the session's tenant's rows only. ORM entities get `with_loader_criteria`;
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

A whole `text()` statement is opaque and passes unchecked: only migrations and explicit
owner functions use raw SQL, and on PostgreSQL RLS still applies to it. So does anything
run on `session.connection()`, which bypasses the session's events.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import and_, event, text
from sqlalchemy.dialects.postgresql.dml import OnConflictDoUpdate as PostgresUpsert
from sqlalchemy.dialects.sqlite.dml import OnConflictDoUpdate as SqliteUpsert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, with_loader_criteria
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import Delete, Insert, Update, ValuesBase
from sqlalchemy.sql.elements import (
    BindParameter,
    ClauseElement,
    ColumnClause,
    ColumnElement,
    Label,
)
from sqlalchemy.sql.selectable import (
    AliasedReturnsRows,
    FromClause,
    FromClauseAlias,
    Join,
    Select,
    TableClause,
)
from sqlalchemy.sql.visitors import HasTraverseInternals

from foundation.database import SCOPE_KEY as TENANT_KEY
from foundation.orm import Base, TenantOwned
from tenancy.context import TenantId

TENANT_COLUMN = "tenant_id"
# A parameter that sets tenant_id: the column's own key, or a multi-row VALUES row's.
_TENANT_PARAMETER = re.compile(rf"{TENANT_COLUMN}(_m\d+)?")

Rows = list[Mapping[str, Any]]
Upsert = PostgresUpsert | SqliteUpsert


class MissingTenantScope(RuntimeError):
    """A tenant-owned statement had no tenant, or could leave it: a programming error."""


class TenantScopedSession(Session):
    """A session confined to `info[TENANT_KEY]`, or to nothing tenant-owned when that is None."""


def session_tenant(session: Session) -> TenantId | None:
    tenant: TenantId | None = session.info.get(TENANT_KEY)
    return tenant


def _tenant_owned_names() -> set[str]:
    """Names of the tables of the models that declare themselves `TenantOwned`."""
    return {
        cast(TableClause, mapper.local_table).name
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantOwned)
    }


def _owned_name(element: object, owned: set[str]) -> str | None:
    """The tenant-owned table `element` is (or aliases), however built; else None."""
    while isinstance(element, FromClauseAlias):
        element = element.element
    if isinstance(element, TableClause) and element.name in owned:
        return element.name
    return None


def _owned(element: object, owned: set[str]) -> bool:
    return _owned_name(element, owned) is not None


def _key(from_: object) -> str:
    """How a from is told apart in one SELECT: its name (an alias's, if aliased)."""
    name = getattr(from_, "name", None)
    return str(name) if name else f"#{id(from_)}"


def _is_orm(element: ClauseElement) -> bool:
    """Whether the ORM names this element, so `with_loader_criteria` reaches it."""
    return "parententity" in element._annotations


@dataclass
class _Survey:
    """What one walk over a statement found."""

    owned: set[str] = field(default_factory=set)
    writes: list[ValuesBase] = field(default_factory=list)
    needs_rewrite: bool = False
    full_join: bool = False


def _children(element: ClauseElement) -> Iterable[ClauseElement]:
    """An element's parts; for a SELECT, without the froms it derives from its columns.

    Those derived froms are bare tables even for ORM columns, so walking them would
    take every ORM statement for a Core one.
    """
    if isinstance(element, Select):
        children = HasTraverseInternals.get_children(
            element, omit_attrs=("_correlate", "_correlate_except")
        )
        return cast(Iterable[ClauseElement], children)
    return element.get_children()


def _is_full_join(element: ClauseElement) -> bool:
    if isinstance(element, Join):
        return element.full
    if isinstance(element, Select):
        return any(flags.get("full") for *_, flags in element._setup_joins)
    return False


def _orm_covered(element: Select[Any] | Update | Delete) -> frozenset[str]:
    """Froms of this SELECT, UPDATE or DELETE that the ORM names, so its criteria reach them.

    A bare column of one of these (an ORM `get` compares bare primary key columns) adds
    no FROM of its own, so it needs no Core rewrite.
    """
    if isinstance(element, Select):
        joined = [target for target, *_ in element._setup_joins]
        parts: list[Any] = [*element._raw_columns, *element._from_obj, *joined]
    else:
        parts = [element.table]
    return frozenset(
        _key(part.table if isinstance(part, ColumnClause) else part)
        for part in parts
        if isinstance(part, ClauseElement) and _is_orm(part)
    )


def _survey(statement: ClauseElement, owned: set[str]) -> _Survey:
    """Tenant-owned tables named, DML writing them, and whether any needs a Core rewrite.

    A Core rewrite is needed when a tenant-owned table is named outside the ORM (the
    loader criteria miss it) or an upsert may update an existing row.
    """
    found = _Survey()
    stack: list[tuple[ClauseElement, bool, frozenset[str]]] = [(statement, False, frozenset())]
    while stack:
        element, in_orm, covered = stack.pop()
        in_orm = in_orm or _is_orm(element)
        if isinstance(element, (Select, Update, Delete)):
            covered = _orm_covered(element)
        table = element.table if isinstance(element, ColumnClause) else element
        name = _owned_name(table, owned)
        if name is not None:
            found.owned.add(name)
            column_of_covered = table is not element and _key(table) in covered
            found.needs_rewrite |= not (in_orm or column_of_covered)
        if isinstance(element, (Insert, Update)) and _owned(element.table, owned):
            found.writes.append(element)
        found.needs_rewrite |= isinstance(element, Upsert)
        found.full_join |= _is_full_join(element)
        stack.extend((child, in_orm, covered) for child in _children(element))
        if table is not element and isinstance(table, AliasedReturnsRows):
            stack.append((table, in_orm, covered))  # a subquery named only by its columns
    return found


def _parameter_rows(state: ORMExecuteState) -> Rows:
    parameters = state.parameters
    if not parameters:
        return []
    return [parameters] if isinstance(parameters, Mapping) else list(parameters)


def _names_tenant(key: object) -> bool:
    name = key if isinstance(key, str) else getattr(key, "key", None)
    return name == TENANT_COLUMN


def _values_rows(statement: ValuesBase) -> Iterator[object]:
    """The tenant_id of each multi-row VALUES row, keyed or positional."""
    positions = list(statement.table.c.keys())
    for rows in statement._multi_values:
        for row in rows:
            if isinstance(row, Mapping):
                yield from (value for key, value in row.items() if _names_tenant(key))
            elif TENANT_COLUMN in positions and len(row) > positions.index(TENANT_COLUMN):
                yield row[positions.index(TENANT_COLUMN)]


def _selected_tenant(statement: Insert) -> object:
    """What an INSERT ... FROM SELECT gives tenant_id; None if it cannot be read off."""
    names = [str(name) for name in statement._select_names or []]
    select = statement.select
    if TENANT_COLUMN not in names or not isinstance(select, Select):
        return None
    columns = list(select.selected_columns)
    if len(columns) != len(names):
        return None
    column: object = columns[names.index(TENANT_COLUMN)]
    while isinstance(column, Label):
        column = column.element
    return column


def _upserts(statement: Insert) -> Iterator[Upsert]:
    """The ON CONFLICT DO UPDATE clauses of an INSERT."""
    if statement._post_values_clause is not None:
        for clause in visitors.iterate(statement._post_values_clause):
            if isinstance(clause, Upsert):
                yield clause


def _and(*criteria: ColumnElement[bool] | None) -> ColumnElement[bool]:
    return and_(*(criterion for criterion in criteria if criterion is not None))


def _written_tenants(statement: ValuesBase, rows: Rows) -> Iterator[object]:
    """Every value the statement may write into tenant_id, in whatever form it comes."""
    yield from (value for key, value in (statement._values or {}).items() if _names_tenant(key))
    yield from _values_rows(statement)
    if isinstance(statement, Insert):
        if statement.select is not None:
            yield _selected_tenant(statement)
        for upsert in _upserts(statement):
            sets = upsert.update_values_to_set.items()
            yield from (value for key, value in sets if _names_tenant(key))
    for row in rows:
        yield from (value for key, value in row.items() if _TENANT_PARAMETER.fullmatch(key))


def _is_tenant(value: object, tenant: TenantId, rows: Rows) -> bool:
    """Whether `value` provably is `tenant`: a plain value, or a bound one, never SQL."""
    if isinstance(value, BindParameter):
        overrides = [row[value.key] for row in rows if value.key in row]
        return all(v == tenant for v in overrides or [value.effective_value])
    return not isinstance(value, ClauseElement) and value == tenant


def _refuse_foreign_writes(writes: Iterable[ValuesBase], tenant: TenantId, rows: Rows) -> None:
    for statement in writes:
        for value in _written_tenants(statement, rows):
            if not _is_tenant(value, tenant, rows):
                raise MissingTenantScope(
                    f"{statement.__visit_name__} on {statement.table} may set tenant_id "
                    "to another tenant than the session's"
                )


class _CoreConfinement:
    """Adds the tenant filter to every Core SELECT, join, UPDATE, DELETE and upsert.

    Used through `visitors.cloned_traverse`, which hands each visitor a fresh clone to
    change in place (children before parents), so cached statements stay untouched.
    Froms are matched by name: two froms of one SELECT cannot share one.
    """

    def __init__(self, tenant: TenantId, owned: set[str]) -> None:
        self.tenant = tenant
        self.owned = owned

    def confine(self, statement: ClauseElement) -> ClauseElement:
        visit: dict[str, Callable[[Any], None]] = {
            "select": self.visit_select,
            "join": self.visit_join,
            "update": self.visit_dml,
            "delete": self.visit_dml,
            "insert": self.visit_insert,
        }
        return visitors.cloned_traverse(statement, {}, visit)

    def criterion(self, from_: FromClause) -> ColumnElement[bool]:
        column = from_.c.get(TENANT_COLUMN)
        if column is None:
            raise MissingTenantScope(f"{from_} names no {TENANT_COLUMN} column to confine it by")
        return column == self.tenant

    def joined(self, from_: FromClause) -> list[FromClause]:
        """Tenant-owned froms a join always yields (not the nullable side of an outer join)."""
        if isinstance(from_, Join):
            inner = [] if from_.isouter else self.joined(from_.right)
            return self.joined(from_.left) + inner
        return [from_] if _owned(from_, self.owned) else []

    def under(self, from_: FromClause) -> Iterator[FromClause]:
        """Every from inside a join."""
        if isinstance(from_, Join):
            yield from self.under(from_.left)
            yield from self.under(from_.right)
        else:
            yield from_

    def visit_join(self, join: Join) -> None:
        nullable = [from_ for from_ in self.joined(join.right) if not _is_orm(from_)]
        if join.isouter and nullable:
            join.onclause = _and(join.onclause, *map(self.criterion, nullable))

    def visit_select(self, select: Select[Any]) -> None:
        hidden: set[str] = set()  # froms a join in this SELECT renders, and confines itself
        required: list[FromClause] = []
        for from_ in select._from_obj:
            hidden.update(_key(inner) for inner in self.under(from_))
            required.extend(self.joined(from_))
        select._setup_joins = tuple(
            self.confine_setup_join(entry, hidden, required) for entry in select._setup_joins
        )
        for element in [*select._raw_columns, *select._where_criteria]:
            required.extend(f for f in element._from_objects if _key(f) not in hidden)
        self.filter(select, required)

    def confine_setup_join(self, entry: Any, hidden: set[str], required: list[FromClause]) -> Any:
        """A `Select.join()` entry, its target confined in ON (outer) or WHERE (inner)."""
        target, onclause, left, flags = entry
        if left is not None and _key(left) not in hidden:
            required.append(left)
        if not isinstance(target, FromClause):
            return entry  # a relationship attribute: an ORM join the loader criteria reach
        hidden.update(_key(inner) for inner in self.under(target))
        if not flags.get("isouter"):
            required.extend(self.joined(target))
            return entry
        nullable = [inner for inner in self.joined(target) if not _is_orm(inner)]
        if not nullable:
            return entry
        if onclause is None:
            raise MissingTenantScope(f"an outer join to {target} needs an explicit ON clause")
        return target, _and(onclause, *map(self.criterion, nullable)), left, flags

    def visit_dml(self, statement: Update | Delete) -> None:
        froms: list[FromClause] = [cast(FromClause, statement.table)]
        for element in statement._where_criteria:
            froms.extend(element._from_objects)
        self.filter(statement, froms)

    def visit_insert(self, statement: Insert) -> None:
        """An upsert's DO UPDATE touches only the tenant's existing row."""
        if _owned(statement.table, self.owned):
            for upsert in _upserts(statement):
                confined = self.criterion(cast(FromClause, statement.table))
                upsert.update_whereclause = _and(upsert.update_whereclause, confined)

    def filter(self, statement: Select[Any] | Update | Delete, froms: Iterable[FromClause]) -> None:
        """Adds `tenant_id = :tenant` to WHERE once per tenant-owned from."""
        seen: set[str] = set()
        for from_ in froms:
            if _owned(from_, self.owned) and _key(from_) not in seen:
                seen.add(_key(from_))
                statement._where_criteria += (self.criterion(from_),)


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


@event.listens_for(TenantScopedSession, "do_orm_execute")
def _confine_statement(state: ORMExecuteState) -> None:
    if state.is_column_load or state.is_relationship_load:
        return  # their parent statement was already confined
    owned = _tenant_owned_names()
    statement = cast(ClauseElement, state.statement)
    survey = _survey(statement, owned)
    mapped = (_owned_name(mapper.local_table, owned) for mapper in state.all_mappers)
    survey.owned.update(name for name in mapped if name is not None)
    if not survey.owned:
        return
    tenant = session_tenant(state.session)
    if tenant is None:
        raise MissingTenantScope(
            f"statement on tenant-owned {', '.join(sorted(survey.owned))} outside a tenant scope"
        )
    if survey.full_join:
        raise MissingTenantScope("a FULL OUTER JOIN on tenant-owned tables cannot be confined")
    _refuse_foreign_writes(survey.writes, tenant, _parameter_rows(state))
    if survey.needs_rewrite or _is_update_by_primary_key(state):
        statement = _CoreConfinement(tenant, owned).confine(statement)
    state.statement = _confine_reads(statement, tenant)


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
