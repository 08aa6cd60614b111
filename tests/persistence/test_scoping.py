"""The application wall: statements on tenant-owned tables stay in the session's tenant.

These run on SQLite, where this wall is the only one, and on PostgreSQL, where row-level
security stands behind it: the wall must refuse the same statements on both. Reads here;
the forms of writing tenant_id are in test_scoping_writes.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.orm import aliased

from engine import events
from engine.rows import insert_all
from persistence.models import Event, Tenant, UsageCounter
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.scoping import MissingTenantScope, prebuilt
from tests.conftest import NewTenant
from tiers import repository as counters

EVENTS = Event.__table__
TENANTS = Tenant.__table__
COUNTERS = UsageCounter.__table__


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


async def count_workflows(database: TenantDatabase, used: dict[TenantId, int]) -> None:
    """Each tenant's workflows counter set to its number."""
    for tenant, count in used.items():
        async with database.transaction(tenant) as session:
            await counters.increment(session, tenant, "workflows", "", count, None)


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
    await count_workflows(database, {tenant_a: 2, tenant_b: 7})
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


async def test_orm_update_cannot_move_rows_to_another_tenant(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    async with database.transaction(tenant_a) as session:
        await counters.increment(session, tenant_a, "workflows", "", 2, None)
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await session.execute(update(UsageCounter).values(tenant_id=tenant_b))
    async with database.transaction(tenant_b) as session:
        assert (await session.scalars(select(UsageCounter))).all() == []
    async with database.transaction(tenant_a) as session:
        assert await counters.read(session, tenant_a, "workflows", "") == 2


async def test_core_table_select_in_a_tenant_session_is_confined(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    own = await append_events(database, tenant_a, 1)
    await append_events(database, tenant_b, 2)
    async with database.transaction(tenant_a) as session:
        owners = (await session.scalars(select(EVENTS.c.tenant_id))).all()
        count = await session.scalar(select(func.count()).select_from(EVENTS))
    assert (set(owners), count) == ({tenant_a}, 1)
    assert await core_event_ids(database, tenant_a, select(EVENTS.c.id)) == own


async def core_event_ids(database: TenantDatabase, tenant: TenantId, statement: Any) -> list[int]:
    async with database.transaction(tenant) as session:
        return sorted(event_id for event_id in (await session.scalars(statement)).all())


CORE_READS = {
    "alias": lambda: select(EVENTS.alias("e").c.id),
    "inner-join": lambda: select(EVENTS.c.id).join(TENANTS, TENANTS.c.id == EVENTS.c.tenant_id),
    "explicit-join": lambda: select(EVENTS.c.id).select_from(
        TENANTS.join(EVENTS, EVENTS.c.tenant_id == TENANTS.c.id)
    ),
    "join-from": lambda: select(EVENTS.c.id).join_from(
        EVENTS, TENANTS, EVENTS.c.tenant_id == TENANTS.c.id
    ),
    "self-join": lambda: select(EVENTS.c.id).join(
        other := EVENTS.alias("other"), other.c.id == EVENTS.c.id
    ),
    "subquery": lambda: select(select(EVENTS.c.id).subquery().c.id),
    "cte": lambda: select(select(EVENTS.c.id).cte("own").c.id),
    "scalar-subquery": lambda: select(select(func.max(EVENTS.c.id)).scalar_subquery()),
    "union": lambda: union_all(
        select(EVENTS.c.id).where(EVENTS.c.type == "e"),
        select(EVENTS.c.id).where(EVENTS.c.type != "e"),
    ),
    "mixed-with-orm": lambda: select(Event.id).join(
        core := EVENTS.alias("core"), core.c.id == Event.id
    ),
    "orm-alias-and-core": lambda: select(EVENTS.c.id).join(
        orm := aliased(Event), orm.id == EVENTS.c.id
    ),
}


@pytest.mark.parametrize("read", CORE_READS.values(), ids=CORE_READS.keys())
async def test_core_reads_of_every_shape_are_confined(
    database: TenantDatabase, new_tenant: NewTenant, read: Any
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    await append_events(database, tenant_b, 2)
    own = await append_events(database, tenant_a, 1)
    await append_events(database, tenant_b, 2)
    assert await core_event_ids(database, tenant_a, read()) == own


async def test_core_subqueries_under_a_shared_table_are_confined(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    await append_events(database, tenant_b, 1)
    correlated = exists(select(EVENTS.c.id).where(EVENTS.c.tenant_id == TENANTS.c.id))
    with_events = [correlated, TENANTS.c.id.in_(select(EVENTS.c.tenant_id))]
    async with database.transaction(tenant_a) as session:
        for criterion in with_events:
            assert (await session.scalars(select(TENANTS.c.id).where(criterion))).all() == []


@pytest.mark.parametrize("explicit", [False, True], ids=["select-join", "join-object"])
async def test_core_outer_join_keeps_other_tenants_rows_off_the_nullable_side(
    database: TenantDatabase, new_tenant: NewTenant, explicit: bool
) -> None:
    """The filter goes in ON, so the outer side keeps its rows (PostgreSQL shows one tenant)."""
    tenant_a, tenant_b = await two_tenants(new_tenant)
    own = await append_events(database, tenant_a, 1)
    await append_events(database, tenant_b, 2)
    joined = EVENTS.c.tenant_id == TENANTS.c.id
    statement = select(TENANTS.c.id, EVENTS.c.id).where(TENANTS.c.id.in_([tenant_a, tenant_b]))
    if explicit:
        statement = statement.select_from(TENANTS.outerjoin(EVENTS, joined))
    else:
        statement = statement.outerjoin(EVENTS, joined)
    async with database.transaction(tenant_a) as session:
        rows = {tuple(row) for row in await session.execute(statement)}
    assert (tenant_a, own[0]) in rows
    assert {event for _, event in rows} <= {own[0], None}
    if database.is_sqlite:
        assert (tenant_b, None) in rows


async def test_outer_join_to_a_core_table_without_on_clause_is_refused(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a = TenantId(await new_tenant())
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await session.execute(select(TENANTS.c.id, EVENTS.c.id).outerjoin(EVENTS))


@pytest.mark.parametrize("core", [False, True], ids=["orm", "core"])
async def test_full_outer_join_on_a_tenant_owned_table_is_refused(
    database: TenantDatabase, new_tenant: NewTenant, core: bool
) -> None:
    """ON cannot keep another tenant's unmatched rows out of a FULL JOIN, nor WHERE its NULLs."""
    tenant_a = TenantId(await new_tenant())
    statement = (
        select(TENANTS.c.id).join(EVENTS, EVENTS.c.tenant_id == TENANTS.c.id, full=True)
        if core
        else select(Tenant.id).join(Event, Event.tenant_id == Tenant.id, full=True)
    )
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await session.execute(statement)


async def test_core_update_and_delete_touch_only_the_sessions_rows(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    await count_workflows(database, {tenant_a: 2, tenant_b: 7})
    await append_events(database, tenant_a, 1)
    foreign = await append_events(database, tenant_b, 2)
    async with database.transaction(tenant_a) as session:
        updated = await session.execute(COUNTERS.update().values(used=0))
        named = await session.execute(
            update(COUNTERS).where(COUNTERS.c.tenant_id == tenant_b).values(used=99)
        )
        deleted = await session.execute(EVENTS.delete())
        deleted_named = await session.execute(delete(EVENTS).where(EVENTS.c.id.in_(foreign)))
    assert [rowcount(r) for r in (updated, named, deleted, deleted_named)] == [1, 0, 1, 0]
    async with database.transaction(tenant_b) as session:
        assert await counters.read(session, tenant_b, "workflows", "") == 7
    assert await event_ids(database, tenant_b) == foreign
    assert await event_ids(database, tenant_a) == []


CORE_STATEMENTS = {
    "select": lambda: select(EVENTS.c.id),
    "alias": lambda: select(EVENTS.alias().c.id),
    "subquery": lambda: select(TENANTS.c.id).where(TENANTS.c.id.in_(select(EVENTS.c.tenant_id))),
    "update": lambda: COUNTERS.update().values(used=0),
    "delete": lambda: EVENTS.delete(),
    "insert": lambda: EVENTS.insert().values(type="x", payload={}, created_at=datetime.now(UTC)),
}


@pytest.mark.parametrize("statement", CORE_STATEMENTS.values(), ids=CORE_STATEMENTS.keys())
async def test_core_statements_without_a_tenant_raise(
    database: TenantDatabase, statement: Any
) -> None:
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            await session.execute(statement())


@pytest.mark.parametrize("core", [False, True], ids=["orm", "core"])
async def test_a_subquery_in_values_reads_only_the_sessions_rows(
    database: TenantDatabase, new_tenant: NewTenant, core: bool
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    [foreign] = await append_events(database, tenant_b, 1, workflow_id="secret")
    source: Any = EVENTS.c if core else Event
    target: Any = EVENTS if core else Event
    peek = select(source.workflow_id).where(source.id == foreign).scalar_subquery()
    async with database.transaction(tenant_a) as session:
        await session.execute(insert(target).values({**smuggled(tenant_a), "workflow_id": peek}))
    async with database.transaction(tenant_a) as session:
        assert (await session.scalars(select(Event.workflow_id))).all() == [None]


@pytest.mark.parametrize("core", [False, True], ids=["orm", "core"])
async def test_insert_from_select_copies_only_the_sessions_rows(
    database: TenantDatabase, new_tenant: NewTenant, core: bool
) -> None:
    tenant_a, tenant_b = await two_tenants(new_tenant)
    own = await append_events(database, tenant_a, 2)
    foreign = await append_events(database, tenant_b, 3)
    source: Any = EVENTS.c if core else Event
    target: Any = EVENTS if core else Event
    names = ["tenant_id", "type", "payload", "created_at"]
    tenant = literal(tenant_a, EVENTS.c.tenant_id.type)
    copy = select(tenant, source.type, source.payload, source.created_at)
    async with database.transaction(tenant_a) as session:
        await session.execute(insert(target).from_select(names, copy))
    assert len(await event_ids(database, tenant_a)) == 2 * len(own)
    assert await event_ids(database, tenant_b) == foreign


PREBUILT_READ = prebuilt(
    select(EVENTS.c.id, EVENTS.c.tenant_id)
    .where(EVENTS.c.type == bindparam("kind"))
    .order_by(EVENTS.c.id)
)
PREBUILT_UPDATE = prebuilt(
    update(COUNTERS).where(COUNTERS.c.metric == bindparam("name")).values(used=bindparam("to"))
)
PREBUILT_INSERT = prebuilt(insert(EVENTS))


async def test_a_prebuilt_statement_is_confined_to_each_tenant_that_runs_it(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """Confined once per tenant and kept: the copy kept for one tenant never serves another."""
    tenant_a, tenant_b = await two_tenants(new_tenant)
    own: dict[TenantId, list[int]] = {}
    for tenant in (tenant_a, tenant_b, tenant_a, tenant_b):
        own.setdefault(tenant, []).extend(await append_events(database, tenant, 2))
    for _ in range(2):
        for tenant in (tenant_a, tenant_b):
            async with database.transaction(tenant) as session:
                rows = (await session.execute(PREBUILT_READ, {"kind": "e"})).all()
            assert [row.id for row in rows] == own[tenant]
            assert {row.tenant_id for row in rows} == {tenant}
    await count_workflows(database, {tenant_a: 3, tenant_b: 7})
    for tenant in (tenant_a, tenant_b):
        async with database.transaction(tenant) as session:
            updated = await session.execute(PREBUILT_UPDATE, {"name": "workflows", "to": 0})
        assert rowcount(updated) == 1, "its own counter only"
    async with database.transaction(tenant_a) as session:
        assert await counters.read(session, tenant_a, "workflows", "") == 0
        await session.execute(PREBUILT_UPDATE, {"name": "workflows", "to": 5})
    async with database.transaction(tenant_b) as session:
        assert await counters.read(session, tenant_b, "workflows", "") == 0


async def test_a_prebuilt_insert_refuses_another_tenants_id_after_it_has_run(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """The parameters are checked at every run, not once with the statement."""
    tenant_a, tenant_b = await two_tenants(new_tenant)
    async with database.transaction(tenant_a) as session:
        await session.execute(PREBUILT_INSERT, [smuggled(tenant_a)])
    with pytest.raises(MissingTenantScope):
        async with database.transaction(tenant_a) as session:
            await session.execute(PREBUILT_INSERT, [smuggled(tenant_a), smuggled(tenant_b)])
    with pytest.raises(MissingTenantScope):
        async with database.transaction(None) as session:
            await session.execute(PREBUILT_READ, {"kind": "e"})
    assert len(await event_ids(database, tenant_b)) == 0


async def test_a_many_row_insert_of_the_engine_refuses_any_row_of_another_tenant(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """Its statement is built once per shape, with every value a bound parameter: each
    run's tenant_id values are checked, in every row."""
    tenant_a, tenant_b = await two_tenants(new_tenant)
    async with database.transaction(tenant_a) as session:
        await insert_all(session, EVENTS, [smuggled(tenant_a), smuggled(tenant_a)])
    for rows in ([smuggled(tenant_a), smuggled(tenant_b)], [smuggled(tenant_b)]):
        with pytest.raises(MissingTenantScope):
            async with database.transaction(tenant_a) as session:
                await insert_all(session, EVENTS, rows)
    assert len(await event_ids(database, tenant_a)) == 2
    assert await event_ids(database, tenant_b) == []
