"""Reading a statement: which tenant-owned tables it touches, and what it writes to tenant_id.

One walk over the statement finds every tenant-owned table however it is named (a
model, its Core `Table`, an alias, a `table()` of the same name), every INSERT or
UPDATE of one, and whether the ORM's loader criteria reach them all. `tenancy.scoping`
decides from that what to refuse and what to confine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import and_, event
from sqlalchemy.dialects.postgresql.dml import OnConflictDoUpdate as PostgresUpsert
from sqlalchemy.dialects.sqlite.dml import OnConflictDoUpdate as SqliteUpsert
from sqlalchemy.orm import Mapper, ORMExecuteState
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
    FromClauseAlias,
    Join,
    Select,
    TableClause,
)
from sqlalchemy.sql.visitors import HasTraverseInternals

from foundation.orm import Base, TenantOwned
from tenancy.context import TenantId

TENANT_COLUMN = "tenant_id"
# A parameter that sets tenant_id: the column's own key, or a multi-row VALUES row's.
_TENANT_PARAMETER = re.compile(rf"{TENANT_COLUMN}(_m\d+)?")

Rows = list[Mapping[str, Any]]
Upsert = PostgresUpsert | SqliteUpsert


class MissingTenantScope(RuntimeError):
    """A tenant-owned statement had no tenant, or could leave it: a programming error."""


_owned_names: frozenset[str] | None = None


@event.listens_for(Mapper, "after_mapper_constructed")
def _forget_owned_names(_mapper: Mapper[Any], _class: type) -> None:
    global _owned_names
    _owned_names = None


def tenant_owned_names() -> frozenset[str]:
    """Names of the tables of the models that declare themselves `TenantOwned`.

    Read at every statement, so kept until another mapper is constructed.
    """
    global _owned_names
    if _owned_names is None:
        _owned_names = frozenset(
            cast(TableClause, mapper.local_table).name
            for mapper in Base.registry.mappers
            if issubclass(mapper.class_, TenantOwned)
        )
    return _owned_names


def owned_name(element: object, owned: AbstractSet[str]) -> str | None:
    """The tenant-owned table `element` is (or aliases), however built; else None."""
    while isinstance(element, FromClauseAlias):
        element = element.element
    if isinstance(element, TableClause) and element.name in owned:
        return element.name
    return None


def is_owned(element: object, owned: AbstractSet[str]) -> bool:
    return owned_name(element, owned) is not None


def from_key(from_: object) -> str:
    """How a from is told apart in one SELECT: its name (an alias's, if aliased)."""
    name = getattr(from_, "name", None)
    return str(name) if name else f"#{id(from_)}"


def is_orm(element: ClauseElement) -> bool:
    """Whether the ORM names this element, so `with_loader_criteria` reaches it."""
    return "parententity" in element._annotations


@dataclass
class Survey:
    """What one walk over a statement found."""

    owned: set[str] = field(default_factory=set)
    writes: list[ValuesBase] = field(default_factory=list)
    needs_rewrite: bool = False
    full_join: bool = False
    orm_covered: bool = False
    """Some tenant-owned table is named through the ORM: its loader criteria confine it."""


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
        from_key(part.table if isinstance(part, ColumnClause) else part)
        for part in parts
        if isinstance(part, ClauseElement) and is_orm(part)
    )


def survey(statement: ClauseElement, owned: AbstractSet[str]) -> Survey:
    """Tenant-owned tables named, DML writing them, and whether any needs a Core rewrite.

    A Core rewrite is needed when a tenant-owned table is named outside the ORM (the
    loader criteria miss it) or an upsert may update an existing row.
    """
    found = Survey()
    stack: list[tuple[ClauseElement, bool, frozenset[str]]] = [(statement, False, frozenset())]
    while stack:
        element, in_orm, covered = stack.pop()
        in_orm = in_orm or is_orm(element)
        if isinstance(element, (Select, Update, Delete)):
            covered = _orm_covered(element)
        table = element.table if isinstance(element, ColumnClause) else element
        name = owned_name(table, owned)
        if name is not None:
            found.owned.add(name)
            column_of_covered = table is not element and from_key(table) in covered
            found.needs_rewrite |= not (in_orm or column_of_covered)
            found.orm_covered |= in_orm or column_of_covered
        if isinstance(element, (Insert, Update)) and is_owned(element.table, owned):
            found.writes.append(element)
        found.needs_rewrite |= isinstance(element, Upsert)
        found.full_join |= _is_full_join(element)
        stack.extend((child, in_orm, covered) for child in _children(element))
        if table is not element and isinstance(table, AliasedReturnsRows):
            stack.append((table, in_orm, covered))  # a subquery named only by its columns
    return found


def parameter_rows(state: ORMExecuteState) -> Rows:
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


def upserts(statement: Insert) -> Iterator[Upsert]:
    """The ON CONFLICT DO UPDATE clauses of an INSERT."""
    if statement._post_values_clause is not None:
        for clause in visitors.iterate(statement._post_values_clause):
            if isinstance(clause, Upsert):
                yield clause


def all_of(*criteria: ColumnElement[bool] | None) -> ColumnElement[bool]:
    return and_(*(criterion for criterion in criteria if criterion is not None))


def _written_tenants(statement: ValuesBase, rows: Rows) -> Iterator[object]:
    """Every value the statement may write into tenant_id, in whatever form it comes."""
    yield from (value for key, value in (statement._values or {}).items() if _names_tenant(key))
    yield from _values_rows(statement)
    if isinstance(statement, Insert):
        if statement.select is not None:
            yield _selected_tenant(statement)
        for upsert in upserts(statement):
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


def refuse_foreign_writes(writes: Iterable[ValuesBase], tenant: TenantId, rows: Rows) -> None:
    for statement in writes:
        for value in _written_tenants(statement, rows):
            if not _is_tenant(value, tenant, rows):
                raise MissingTenantScope(
                    f"{statement.__visit_name__} on {statement.table} may set tenant_id "
                    "to another tenant than the session's"
                )
