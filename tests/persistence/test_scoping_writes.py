"""The application wall on writes: tenant_id takes the session's tenant, in every form.

Each form runs against the ORM model and its Core table, on SQLite (the only wall) and
PostgreSQL (row-level security behind it); the wall refuses the same forms on both, before
the database sees them. Inserts write the event log, updates the usage counters.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, func, insert, literal, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from persistence.models import Event, Tenant, UsageCounter
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.scoping import MissingTenantScope
from tests.conftest import NewTenant
from tests.persistence.test_scoping import append_events, event_ids, smuggled, two_tenants
from tiers import repository as counters

EVENTS = Event.__table__
COUNTERS = UsageCounter.__table__
COUNTER_KEY = {"metric": "workflows", "window": ""}

Run = Callable[[AsyncSession, bool, TenantId, Any], Awaitable[object]]


@dataclass(frozen=True)
class WriteForm:
    """One way of giving tenant_id a value: `run(session, core, own, value)`."""

    name: str
    inserts: bool
    run: Run


def events_target(core: bool) -> Any:
    return EVENTS if core else Event


def counters_target(core: bool) -> Any:
    return COUNTERS if core else UsageCounter


def dialect_insert(session: AsyncSession, core: bool) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(counters_target(core))


async def insert_values(session: AsyncSession, core: bool, own: TenantId, value: Any) -> object:
    return await session.execute(insert(events_target(core)).values(smuggled(value)))


async def insert_multi_values(
    session: AsyncSession, core: bool, own: TenantId, value: Any
) -> object:
    rows = [smuggled(own), smuggled(value)]
    return await session.execute(insert(events_target(core)).values(rows))


async def insert_executemany(
    session: AsyncSession, core: bool, own: TenantId, value: Any
) -> object:
    return await session.execute(insert(events_target(core)), [smuggled(own), smuggled(value)])


async def insert_parameter_override(
    session: AsyncSession, core: bool, own: TenantId, value: Any
) -> object:
    """Execution parameters named after the column override the statement's VALUES."""
    statement = insert(events_target(core)).values(smuggled(own))
    return await session.execute(statement, {"tenant_id": value})


async def insert_bound_literal(
    session: AsyncSession, core: bool, own: TenantId, value: Any
) -> object:
    row = {**smuggled(own), "tenant_id": literal(value, EVENTS.c.tenant_id.type)}
    return await session.execute(insert(events_target(core)).values(row))


async def insert_from_select(
    session: AsyncSession, core: bool, own: TenantId, value: Any
) -> object:
    row = smuggled(value)
    columns = [literal(row[name], EVENTS.c[name].type) for name in row]
    return await session.execute(
        insert(events_target(core)).from_select(list(row), select(*columns))
    )


async def upsert_set(session: AsyncSession, core: bool, own: TenantId, value: Any) -> object:
    statement = dialect_insert(session, core).values(tenant_id=own, used=0, **COUNTER_KEY)
    return await session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "metric", "window"], set_={"tenant_id": value}
        )
    )


async def update_set(session: AsyncSession, core: bool, own: TenantId, value: Any) -> object:
    return await session.execute(update(counters_target(core)).values(tenant_id=value))


async def update_ordered_set(
    session: AsyncSession, core: bool, own: TenantId, value: Any
) -> object:
    column = COUNTERS.c.tenant_id if core else UsageCounter.tenant_id
    return await session.execute(update(counters_target(core)).ordered_values((column, value)))


async def update_bound_parameter(
    session: AsyncSession, core: bool, own: TenantId, value: Any
) -> object:
    statement = update(counters_target(core)).values(tenant_id=bindparam("owner"))
    return await session.execute(statement, {"owner": value})


async def update_executemany(
    session: AsyncSession, core: bool, own: TenantId, value: Any
) -> object:
    """Core: SET from each parameter set. ORM: an UPDATE by primary key, which tenant_id is in."""
    if core:
        statement = update(COUNTERS).where(COUNTERS.c.metric == bindparam("key"))
        return await session.execute(statement, [{"key": "workflows", "tenant_id": value}])
    return await session.execute(
        update(UsageCounter),
        [{"tenant_id": value, "used": 5, **COUNTER_KEY}],
        execution_options={"synchronize_session": None},
    )


WRITE_FORMS = [
    WriteForm("insert-values", True, insert_values),
    WriteForm("insert-multi-values", True, insert_multi_values),
    WriteForm("insert-executemany", True, insert_executemany),
    WriteForm("insert-parameter-override", True, insert_parameter_override),
    WriteForm("insert-bound-literal", True, insert_bound_literal),
    WriteForm("insert-from-select", True, insert_from_select),
    WriteForm("upsert-set", False, upsert_set),
    WriteForm("update-set", False, update_set),
    WriteForm("update-ordered-set", False, update_ordered_set),
    WriteForm("update-bound-parameter", False, update_bound_parameter),
    WriteForm("update-executemany", False, update_executemany),
]
FORM_IDS = [form.name for form in WRITE_FORMS]
CORE = pytest.mark.parametrize("core", [False, True], ids=["orm", "core"])

Snapshot = tuple[list[int], list[tuple[str, int]]]


async def two_tenants_with_counters(
    database: TenantDatabase, new_tenant: NewTenant
) -> tuple[TenantId, TenantId]:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    for tenant, used in ((tenant_a, 2), (tenant_b, 7)):
        async with database.transaction(tenant) as session:
            await counters.increment(session, tenant, "workflows", "", used, None)
    await append_events(database, tenant_b, 1)
    return tenant_a, tenant_b


async def snapshot(database: TenantDatabase, tenant: TenantId) -> Snapshot:
    """What the tenant sees: its event ids and its counters."""
    async with database.transaction(tenant) as session:
        rows = (await session.execute(select(UsageCounter.metric, UsageCounter.used))).all()
    return await event_ids(database, tenant), sorted((metric, used) for metric, used in rows)


@CORE
@pytest.mark.parametrize("form", WRITE_FORMS, ids=FORM_IDS)
async def test_writing_another_tenants_id_is_refused(
    database: TenantDatabase, new_tenant: NewTenant, form: WriteForm, core: bool
) -> None:
    tenant_a, tenant_b = await two_tenants_with_counters(database, new_tenant)
    before = [await snapshot(database, tenant) for tenant in (tenant_a, tenant_b)]
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await form.run(session, core, tenant_a, tenant_b)
    assert [await snapshot(database, tenant) for tenant in (tenant_a, tenant_b)] == before


@CORE
@pytest.mark.parametrize("form", WRITE_FORMS, ids=FORM_IDS)
async def test_writing_the_sessions_own_tenant_id_is_allowed(
    database: TenantDatabase, new_tenant: NewTenant, form: WriteForm, core: bool
) -> None:
    tenant_a, tenant_b = await two_tenants_with_counters(database, new_tenant)
    before_a, before_b = [await snapshot(database, tenant) for tenant in (tenant_a, tenant_b)]
    async with database.transaction(tenant_a) as session:
        await form.run(session, core, tenant_a, tenant_a)
    (events_a, counters_a), (events_before, _) = await snapshot(database, tenant_a), before_a
    assert await snapshot(database, tenant_b) == before_b
    assert [metric for metric, _ in counters_a] == ["workflows"]
    assert len(events_a) > len(events_before) if form.inserts else events_a == events_before


EXPRESSIONS: dict[str, Callable[[TenantId], Any]] = {
    "function": lambda tenant: func.lower(tenant),
    "concatenation": lambda tenant: literal(tenant) + "",
    "scalar-subquery": lambda tenant: (
        select(Tenant.id).where(Tenant.id == tenant).scalar_subquery()
    ),
    "text": lambda tenant: text(f"'{tenant}'"),
    "column": lambda tenant: COUNTERS.c.tenant_id,
}


@CORE
@pytest.mark.parametrize("expression", EXPRESSIONS.values(), ids=EXPRESSIONS.keys())
@pytest.mark.parametrize("form", [insert_values, update_set], ids=["insert", "update"])
async def test_sql_expression_as_tenant_id_is_refused_even_when_it_is_the_tenant(
    database: TenantDatabase,
    new_tenant: NewTenant,
    form: Run,
    expression: Callable[[TenantId], Any],
    core: bool,
) -> None:
    """An expression cannot be proven to be the session's tenant before it runs."""
    tenant_a, tenant_b = await two_tenants_with_counters(database, new_tenant)
    before = [await snapshot(database, tenant) for tenant in (tenant_a, tenant_b)]
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await form(session, core, tenant_a, expression(tenant_a))
    assert [await snapshot(database, tenant) for tenant in (tenant_a, tenant_b)] == before


@CORE
async def test_insert_from_select_with_a_selected_tenant_column_is_refused(
    database: TenantDatabase, new_tenant: NewTenant, core: bool
) -> None:
    """Even reading the tenant's own rows: only a bound literal is proof before it runs."""
    tenant_a = TenantId(await new_tenant())
    own = await append_events(database, tenant_a, 1)
    source: Any = EVENTS.c if core else Event
    names = ["tenant_id", "type", "payload", "created_at"]
    copy = select(source.tenant_id, source.type, source.payload, source.created_at)
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await session.execute(insert(events_target(core)).from_select(names, copy))
    assert await event_ids(database, tenant_a) == own


@CORE
async def test_upsert_cannot_update_another_tenants_row(
    admin_database: TenantDatabase, new_tenant: NewTenant, core: bool
) -> None:
    """A conflict on another tenant's id must not reach its row (as the owner: the service
    may not UPDATE events). SQLite skips the DO UPDATE; PostgreSQL's RLS may refuse it."""
    tenant_a, tenant_b = await two_tenants(new_tenant)
    [foreign] = await append_events(admin_database, tenant_b, 1)
    dialect = sqlite if admin_database.is_sqlite else postgresql
    statement = (
        dialect.insert(events_target(core))
        .values({**smuggled(tenant_a), "id": foreign})
        .on_conflict_do_update(index_elements=["id"], set_={"type": "hijacked"})
    )
    try:
        async with admin_database.transaction(tenant_a) as session:
            await session.execute(statement)
    except DBAPIError:
        assert admin_database.is_postgresql
    async with admin_database.transaction(tenant_b) as session:
        assert await session.scalar(select(Event.type).where(Event.id == foreign)) == "e"


async def test_orm_update_by_primary_key_is_confined(
    admin_database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """SQLAlchemy's UPDATE by primary key ignores loader criteria: the wall adds a WHERE,
    which it accepts unsynchronized only (as the owner: the service may not UPDATE events)."""
    tenant_a, tenant_b = await two_tenants(new_tenant)
    [own] = await append_events(admin_database, tenant_a, 1)
    [foreign] = await append_events(admin_database, tenant_b, 1)
    rows = [{"id": foreign, "type": "hijacked"}, {"id": own, "type": "renamed"}]
    with pytest.raises(MissingTenantScope):
        async with admin_database.transaction(tenant_a) as session:
            await session.execute(update(Event), rows)
    async with admin_database.transaction(tenant_a) as session:
        await session.execute(update(Event), rows, execution_options={"synchronize_session": None})
    for tenant, event_id, kind in ((tenant_a, own, "renamed"), (tenant_b, foreign, "e")):
        async with admin_database.transaction(tenant) as session:
            assert await session.scalar(select(Event.type).where(Event.id == event_id)) == kind


PROPERTY_TENANT = TenantId("t-property")
OTHER_TENANTS = st.one_of(
    st.none(),
    st.text(max_size=63),
    st.sampled_from([PROPERTY_TENANT.upper(), f" {PROPERTY_TENANT}", f"{PROPERTY_TENANT}\x00"]),
).filter(lambda tenant: tenant != PROPERTY_TENANT)


@settings(max_examples=60, deadline=None, database=None)
@given(form=st.sampled_from(WRITE_FORMS), core=st.booleans(), other=OTHER_TENANTS)
async def test_any_tenant_id_but_the_sessions_is_refused_in_every_form(
    database: TenantDatabase, form: WriteForm, core: bool, other: str | None
) -> None:
    """Refused before the database sees it, so the session's tenant need not exist."""
    with pytest.raises(MissingTenantScope):
        async with database.transaction(PROPERTY_TENANT) as session:
            await form.run(session, core, PROPERTY_TENANT, other)
