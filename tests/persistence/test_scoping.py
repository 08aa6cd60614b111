"""The application wall: ORM statements on tenant-owned models stay in the session's tenant.

These run on SQLite, where this wall is the only one, and on PostgreSQL, where row-level
security stands behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Executable, delete, func, insert, literal, select, update
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.exc import DBAPIError

from engine import events
from persistence.models import Event, Tenant, UsageCounter
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.scoping import MissingTenantScope
from tests.conftest import NewTenant
from tiers import repository as counters

BUG_INSERT_FORMS = (
    "tenancy/scoping.py _inserted_tenants reads bound values only, so INSERT ... FROM "
    "SELECT and a SQL-expression tenant_id naming another tenant pass the application "
    "wall on SQLite (PostgreSQL's RLS refuses them)"
)
BUG_UPDATE_MOVES_ROWS = (
    "tenancy/scoping.py:72-79 confines the rows an ORM UPDATE matches but not the values "
    "it sets: update(UsageCounter).values(tenant_id=B) in A's session moves A's rows to B"
)
BUG_CORE_TABLES = (
    "tenancy/scoping.py:73-79 confines with with_loader_criteria, which only reaches ORM "
    "entities: a Core statement on events (select(Event.__table__.c.tenant_id), "
    "update(Event.__table__)) is seen as tenant-owned by _owned_tables (it raises without "
    "a tenant) but in a tenant's session it runs over every tenant's rows"
)


async def two_tenants(new_tenant: NewTenant) -> tuple[TenantId, TenantId]:
    return TenantId(await new_tenant()), TenantId(await new_tenant())


async def append_events(
    database: TenantDatabase, tenant: TenantId, count: int, **topics: str | None
) -> list[int]:
    async with database.transaction(tenant) as session:
        return [(await events.append(session, "e", {"n": n}, **topics)).id for n in range(count)]


async def event_ids(database: TenantDatabase, tenant: TenantId) -> list[int]:
    async with database.transaction(tenant) as session:
        return list((await session.scalars(select(Event.id).order_by(Event.id))).all())


def smuggled(tenant: TenantId) -> dict[str, Any]:
    return {"tenant_id": tenant, "type": "smuggled", "payload": {}, "created_at": datetime.now(UTC)}


def xfail_on_sqlite(database: TenantDatabase, request: pytest.FixtureRequest, reason: str) -> None:
    """For holes in the application wall that PostgreSQL's row-level security covers."""
    if database.is_sqlite:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def rowcount(result: Result[Any]) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


async def test_select_returns_only_the_sessions_tenants_events(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    await append_events(database, tenant_b, 40)
    own = await append_events(database, tenant_a, 3)
    await append_events(database, tenant_b, 40)
    async with database.transaction(tenant_a) as session:
        rows = (await session.scalars(select(Event).order_by(Event.id))).all()
    assert [row.id for row in rows] == own
    assert {row.tenant_id for row in rows} == {tenant_a}


async def test_read_after_with_topics_stays_in_the_tenant(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """Both tenants use the same topic ids; the topic OR must not widen the tenant filter."""
    tenant_a, tenant_b = await two_tenants(new_tenant)
    foreign = await append_events(database, tenant_b, 10, workflow_id="wf-1", execution_id="ex-1")
    by_workflow = await append_events(database, tenant_a, 2, workflow_id="wf-1")
    by_execution = await append_events(database, tenant_a, 2, execution_id="ex-1")
    await append_events(database, tenant_a, 2, workflow_id="wf-other")
    async with database.transaction(tenant_a) as session:
        workflow = await events.read_after(session, workflow_ids=["wf-1"])
        either = await events.read_after(session, workflow_ids=["wf-1"], execution_ids=["ex-1"])
        after_first = await events.read_after(session, foreign[0], execution_ids=["ex-1"])
    assert [e.id for e in workflow] == by_workflow
    assert [e.id for e in either] == by_workflow + by_execution
    assert [e.id for e in after_first] == by_execution


async def test_statements_without_a_tenant_raise(database: TenantDatabase) -> None:
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            await session.scalars(select(Event))
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            await session.execute(update(UsageCounter).values(used=0))
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            await session.execute(delete(Event))
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            session.add(Event(type="orphan", payload={}))
            await session.flush()


async def test_adding_another_tenants_row_raises_on_flush_and_stores_nothing(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await events.append(session, "own", {})
            session.add(Event(tenant_id=tenant_b, type="smuggled", payload={}))
            await session.flush()
    assert await event_ids(database, tenant_a) == []
    assert await event_ids(database, tenant_b) == []


async def test_moving_a_loaded_row_to_another_tenant_raises_on_flush(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    [own] = await append_events(database, tenant_a, 1)
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            row = await session.get_one(Event, own)
            row.tenant_id = tenant_b
            await session.flush()
    assert await event_ids(database, tenant_a) == [own]
    assert await event_ids(database, tenant_b) == []


async def test_orm_update_cannot_touch_another_tenants_counters(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    for tenant, used in ((tenant_a, 2), (tenant_b, 7)):
        async with database.transaction(tenant) as session:
            await counters.increment(session, tenant, "workflows", "", used, None)
    async with database.transaction(tenant_a) as session:
        result = await session.execute(update(UsageCounter).values(used=0))
        named = await session.execute(
            update(UsageCounter).where(UsageCounter.tenant_id == tenant_b).values(used=99)
        )
    assert (rowcount(result), rowcount(named)) == (1, 0)
    async with database.transaction(tenant_b) as session:
        assert await counters.read(session, tenant_b, "workflows", "") == 7
    async with database.transaction(tenant_a) as session:
        assert await counters.read(session, tenant_a, "workflows", "") == 0


async def test_orm_delete_cannot_touch_another_tenants_rows(
    admin_database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """As the owner: the service role may not DELETE these tables at all on PostgreSQL."""
    tenant_a, tenant_b = await two_tenants(new_tenant)
    await append_events(admin_database, tenant_a, 1)
    foreign = await append_events(admin_database, tenant_b, 3)
    async with admin_database.transaction(tenant_a) as session:
        everything = await session.execute(delete(Event))
        named = await session.execute(delete(Event).where(Event.id.in_(foreign)))
    assert (rowcount(everything), rowcount(named)) == (1, 0)
    assert await event_ids(admin_database, tenant_b) == foreign
    assert await event_ids(admin_database, tenant_a) == []


async def test_get_by_id_of_another_tenants_event_returns_none(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    [foreign] = await append_events(database, tenant_b, 1)
    async with database.transaction(tenant_a) as session:
        assert await session.get(Event, foreign) is None
        assert await session.get(Event, foreign, populate_existing=True) is None


async def test_new_rows_take_the_sessions_tenant(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    async with database.transaction(tenant_a) as session:
        added = Event(type="stamped", payload={"k": 1})
        session.add(added)
        await session.flush()
        appended = await events.append(session, "appended", {})
        assert (added.tenant_id, appended.tenant_id) == (tenant_a, tenant_a)
    assert await event_ids(database, tenant_a) == [added.id, appended.id]
    assert await event_ids(database, tenant_b) == []


async def test_aggregates_and_joins_over_events_are_confined(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    await append_events(database, tenant_a, 1)
    await append_events(database, tenant_b, 4)
    async with database.transaction(tenant_a) as session:
        count = await session.scalar(select(func.count()).select_from(Event))
        joined = (
            await session.scalars(
                select(Tenant.id).join(Event, Event.tenant_id == Tenant.id).distinct()
            )
        ).all()
        with_events = (
            await session.scalars(select(Tenant.id).where(Tenant.id.in_(select(Event.tenant_id))))
        ).all()
    assert count == 1
    assert list(joined) == [tenant_a]
    assert list(with_events) == [tenant_a]


async def test_aggregate_over_events_without_a_tenant_raises(database: TenantDatabase) -> None:
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            await session.scalar(select(func.count()).select_from(Event))


InsertForm = Callable[[TenantId, TenantId], Executable]


def values_form(a: TenantId, b: TenantId) -> Executable:
    return insert(Event).values(smuggled(b))


def multi_values_form(a: TenantId, b: TenantId) -> Executable:
    return insert(Event).values([smuggled(a), smuggled(b)])


def from_select_form(a: TenantId, b: TenantId) -> Executable:
    row = smuggled(b)
    columns = [literal(row[name], Event.__table__.c[name].type) for name in row]
    return insert(Event).from_select(list(row), select(*columns))


def expression_form(a: TenantId, b: TenantId) -> Executable:
    return insert(Event).values({**smuggled(b), "tenant_id": func.lower(b.upper())})


@pytest.mark.parametrize(
    ("form", "leaks_on_sqlite"),
    [
        (values_form, False),
        (multi_values_form, False),
        (from_select_form, True),
        (expression_form, True),
    ],
    ids=["values", "multi-values", "from-select", "sql-expression"],
)
async def test_orm_insert_naming_another_tenant_is_refused(
    database: TenantDatabase,
    new_tenant: NewTenant,
    request: pytest.FixtureRequest,
    form: InsertForm,
    leaks_on_sqlite: bool,
) -> None:
    """PostgreSQL's RLS WITH CHECK refuses these too; on SQLite the application wall must."""
    if leaks_on_sqlite:
        xfail_on_sqlite(database, request, BUG_INSERT_FORMS)
    tenant_a, tenant_b = await two_tenants(new_tenant)
    with pytest.raises((MissingTenantScope, DBAPIError)):
        async with database.transaction(tenant_a) as session:
            await session.execute(form(tenant_a, tenant_b))
    assert await event_ids(database, tenant_a) == []
    assert await event_ids(database, tenant_b) == []


async def test_orm_bulk_insert_of_own_rows_is_stored(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    async with database.transaction(tenant_a) as session:
        await session.execute(insert(Event), [smuggled(tenant_a), smuggled(tenant_a)])
    assert len(await event_ids(database, tenant_a)) == 2
    assert await event_ids(database, tenant_b) == []


async def test_orm_update_cannot_move_rows_to_another_tenant(
    database: TenantDatabase, new_tenant: NewTenant, request: pytest.FixtureRequest
) -> None:
    xfail_on_sqlite(database, request, BUG_UPDATE_MOVES_ROWS)
    tenant_a, tenant_b = await two_tenants(new_tenant)
    async with database.transaction(tenant_a) as session:
        await counters.increment(session, tenant_a, "workflows", "", 2, None)
    with pytest.raises((MissingTenantScope, DBAPIError)):
        async with database.transaction(tenant_a) as session:
            await session.execute(update(UsageCounter).values(tenant_id=tenant_b))
    async with database.transaction(tenant_b) as session:
        assert (await session.scalars(select(UsageCounter))).all() == []
    async with database.transaction(tenant_a) as session:
        assert await counters.read(session, tenant_a, "workflows", "") == 2


async def test_core_table_select_in_a_tenant_session_is_confined(
    database: TenantDatabase, new_tenant: NewTenant, request: pytest.FixtureRequest
) -> None:
    xfail_on_sqlite(database, request, BUG_CORE_TABLES)
    tenant_a, tenant_b = await two_tenants(new_tenant)
    await append_events(database, tenant_a, 1)
    await append_events(database, tenant_b, 2)
    table = Event.__table__
    async with database.transaction(tenant_a) as session:
        owners = (await session.scalars(select(table.c.tenant_id))).all()
        count = await session.scalar(select(func.count()).select_from(table))
    assert (set(owners), count) == ({tenant_a}, 1)
