"""Confining Core statements: the tenant filter the ORM's loader criteria cannot add.

Loader criteria reach ORM entities only; a Core `Table` (or an alias, or a `table()`)
in a SELECT, join, UPDATE, DELETE or upsert gets `tenant_id = :tenant` here instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
from typing import Any, cast

from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.elements import ClauseElement, ColumnElement
from sqlalchemy.sql.selectable import FromClause, Join, Select

from tenancy.context import TenantId
from tenancy.statements import (
    TENANT_COLUMN,
    MissingTenantScope,
    all_of,
    from_key,
    is_orm,
    is_owned,
    upserts,
)


class CoreConfinement:
    """Adds the tenant filter to every Core SELECT, join, UPDATE, DELETE and upsert.

    Used through `visitors.cloned_traverse`, which hands each visitor a fresh clone to
    change in place (children before parents), so cached statements stay untouched.
    Froms are matched by name: two froms of one SELECT cannot share one.
    """

    def __init__(self, tenant: TenantId, owned: AbstractSet[str]) -> None:
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
        return [from_] if is_owned(from_, self.owned) else []

    def under(self, from_: FromClause) -> Iterator[FromClause]:
        """Every from inside a join."""
        if isinstance(from_, Join):
            yield from self.under(from_.left)
            yield from self.under(from_.right)
        else:
            yield from_

    def visit_join(self, join: Join) -> None:
        nullable = [from_ for from_ in self.joined(join.right) if not is_orm(from_)]
        if join.isouter and nullable:
            join.onclause = all_of(join.onclause, *map(self.criterion, nullable))

    def visit_select(self, select: Select[Any]) -> None:
        hidden: set[str] = set()  # froms a join in this SELECT renders, and confines itself
        required: list[FromClause] = []
        for from_ in select._from_obj:
            hidden.update(from_key(inner) for inner in self.under(from_))
            required.extend(self.joined(from_))
        select._setup_joins = tuple(
            self.confine_setup_join(entry, hidden, required) for entry in select._setup_joins
        )
        for element in [*select._raw_columns, *select._where_criteria]:
            required.extend(f for f in element._from_objects if from_key(f) not in hidden)
        self.filter(select, required)

    def confine_setup_join(self, entry: Any, hidden: set[str], required: list[FromClause]) -> Any:
        """A `Select.join()` entry, its target confined in ON (outer) or WHERE (inner)."""
        target, onclause, left, flags = entry
        if left is not None and from_key(left) not in hidden:
            required.append(left)
        if not isinstance(target, FromClause):
            return entry  # a relationship attribute: an ORM join the loader criteria reach
        hidden.update(from_key(inner) for inner in self.under(target))
        if not flags.get("isouter"):
            required.extend(self.joined(target))
            return entry
        nullable = [inner for inner in self.joined(target) if not is_orm(inner)]
        if not nullable:
            return entry
        if onclause is None:
            raise MissingTenantScope(f"an outer join to {target} needs an explicit ON clause")
        return target, all_of(onclause, *map(self.criterion, nullable)), left, flags

    def visit_dml(self, statement: Update | Delete) -> None:
        froms: list[FromClause] = [cast(FromClause, statement.table)]
        for element in statement._where_criteria:
            froms.extend(element._from_objects)
        self.filter(statement, froms)

    def visit_insert(self, statement: Insert) -> None:
        """An upsert's DO UPDATE touches only the tenant's existing row."""
        if is_owned(statement.table, self.owned):
            for upsert in upserts(statement):
                confined = self.criterion(cast(FromClause, statement.table))
                upsert.update_whereclause = all_of(upsert.update_whereclause, confined)

    def filter(self, statement: Select[Any] | Update | Delete, froms: Iterable[FromClause]) -> None:
        """Adds `tenant_id = :tenant` to WHERE once per tenant-owned from."""
        seen: set[str] = set()
        for from_ in froms:
            if is_owned(from_, self.owned) and from_key(from_) not in seen:
                seen.add(from_key(from_))
                statement._where_criteria += (self.criterion(from_),)
