"""The application wall: ORM statements are confined to the session's tenant."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from service.events import repository as events
from service.persistence.database import Database
from service.persistence.models import Event, UsageCounter
from tenancy.context import TenantId
from tenancy.scoping import MissingTenantScope
from tests.conftest import NewTenant
from tiers import Quota, consume, plan_for


async def test_select_sees_only_the_sessions_tenant(
    database: Database, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = TenantId(await new_tenant()), TenantId(await new_tenant())
    async with database.transaction(tenant_b) as session:
        for n in range(5):
            await events.append(session, "b_event", {"n": n}, workflow_id="w-shared")
    async with database.transaction(tenant_a) as session:
        own = await events.append(session, "a_event", {}, workflow_id="w-shared")
    async with database.transaction(tenant_a) as session:
        rows = (await session.scalars(select(Event))).all()
        by_topic = await events.read_after(session, workflow_ids=["w-shared"])
    assert [r.id for r in rows] == [own.id]
    assert [r.id for r in by_topic] == [own.id]
    assert {r.tenant_id for r in rows} == {tenant_a}


async def test_get_by_id_of_another_tenants_row_finds_nothing(
    database: Database, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = TenantId(await new_tenant()), TenantId(await new_tenant())
    async with database.transaction(tenant_b) as session:
        foreign = await events.append(session, "b_event", {})
    async with database.transaction(tenant_a) as session:
        assert await session.get(Event, foreign.id) is None


async def test_tenant_owned_statement_without_a_tenant_raises(database: Database) -> None:
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            await session.scalars(select(Event))
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            await session.execute(update(UsageCounter).values(used=0))


async def test_row_for_another_tenant_is_refused_and_nothing_stored(
    database: Database, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = TenantId(await new_tenant()), TenantId(await new_tenant())
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await events.append(session, "ok", {})
            session.add(Event(tenant_id=tenant_b, type="smuggled", payload={}))
            await session.flush()
    async with database.transaction(tenant_a) as session:
        assert (await session.scalars(select(Event))).all() == []
    async with database.transaction(tenant_b) as session:
        assert (await session.scalars(select(Event))).all() == []


async def test_update_cannot_touch_another_tenants_counters(
    database: Database, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = TenantId(await new_tenant()), TenantId(await new_tenant())
    async with database.transaction(tenant_b) as session:
        await consume(session, plan_for(tenant_b, "free"), Quota.WORKFLOWS, 3)
    async with database.transaction(tenant_a) as session:
        await session.execute(update(UsageCounter).values(used=0))
    async with database.transaction(tenant_b) as session:
        used = await session.scalar(select(UsageCounter.used))
    assert used == 3


async def test_new_rows_take_the_sessions_tenant(database: Database, new_tenant: NewTenant) -> None:
    tenant_a = TenantId(await new_tenant())
    async with database.transaction(tenant_a) as session:
        event = await events.append(session, "stamped", {"k": 1})
    assert event.tenant_id == tenant_a
