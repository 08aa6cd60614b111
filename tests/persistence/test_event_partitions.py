"""The event log's weekly partitions (PostgreSQL): where rows land, what the purge drops and
adds, that the tenant wall stands on every partition, and that the migration goes both ways."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from engine import events, retention
from engine.engine import Engine
from engine.tools import ToolRegistry
from persistence.migrate import downgrade, upgrade
from persistence.models import Event
from service.tenants import service as tenants
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import server_settings
from tests.databases import ThrowawayDatabase, postgres_database
from tiers import tenants as tenant_rows

pytestmark = pytest.mark.postgres

EVERY_EVENT = (
    "SELECT id, tenant_id, type, created_at FROM wfe_event_feed(0, 9e15::bigint, NULL, 10000)"
)


def week_of(at: datetime) -> datetime:
    """The Monday, 00:00 UTC, that starts the week `at` falls in."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def partition_of(at: datetime) -> str:
    return f"events_p{week_of(at):%Y%m%d}"


async def create_tenant(
    owner_db: TenantDatabase, tier: str = "free", overrides: dict[str, Any] | None = None
) -> TenantId:
    tenant_id = TenantId(f"part-{uuid.uuid4().hex[:12]}")
    async with owner_db.transaction(None) as session:
        await tenants.create(session, tenant_id, f"Tenant {tenant_id}", tier, overrides)
    return tenant_id


async def write_event(service_db: TenantDatabase, tenant: TenantId, at: datetime) -> int:
    """An event of `tenant` created at `at`, written by the service role."""
    async with service_db.transaction(tenant) as session:
        event = Event(type="test.partitioned", payload={}, created_at=at)
        session.add(event)
        await session.flush()
        return event.id


async def located(service_db: TenantDatabase, tenant: TenantId, event_id: int) -> str | None:
    """The partition holding the event, as the tenant's transaction sees it through `events`."""
    async with service_db.transaction(tenant) as session:
        found = await session.scalar(
            text("SELECT tableoid::regclass::text FROM events WHERE id = :id"), {"id": event_id}
        )
    return str(found) if found is not None else None


async def partitions(owner_db: TenantDatabase) -> set[str]:
    async with owner_db.transaction(None) as session:
        names = await session.scalars(
            text(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent = 'events'::regclass"
            )
        )
        return set(names)


async def make_partition(owner_db: TenantDatabase, at: datetime) -> None:
    async with owner_db.transaction(None) as session:
        await session.execute(text("SELECT wfe_event_partition_create(:at)"), {"at": at})


async def drop_partition(owner_db: TenantDatabase, name: str) -> None:
    async with owner_db.transaction(None) as session:
        await session.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


async def all_tenants(service_db: TenantDatabase) -> list[TenantId]:
    async with service_db.transaction(None) as session:
        return await tenant_rows.all_ids(session)


def purger(service_db: TenantDatabase) -> Engine:
    return Engine(service_db, ToolRegistry(server_settings()), server_settings())


async def test_an_appended_event_lands_in_the_partition_of_its_week(
    service_db: TenantDatabase, owner_db: TenantDatabase
) -> None:
    async with owner_db.transaction(None) as session:
        strategy = (
            await session.execute(
                text(
                    "SELECT partstrat, pg_get_partkeydef(partrelid) FROM pg_partitioned_table "
                    "WHERE partrelid = 'events'::regclass"
                )
            )
        ).one()
    assert tuple(strategy) == ("r", "RANGE (created_at)")
    tenant = await create_tenant(owner_db)
    async with service_db.transaction(tenant) as session:
        event = await events.append(session, "test.partitioned", {"n": 1})
        holder = await session.scalar(
            text("SELECT tableoid::regclass::text FROM events WHERE id = :id"), {"id": event.id}
        )
    assert holder == partition_of(event.created_at)


async def test_the_horizon_reads_the_sequence_the_partitioned_log_draws_from(
    service_db: TenantDatabase, owner_db: TenantDatabase
) -> None:
    tenant = await create_tenant(owner_db)
    async with service_db.transaction(tenant) as session:
        event = await events.append(session, "test.partitioned", {})
    async with service_db.transaction(None) as session:
        last_id = await session.scalar(text("SELECT last_id FROM wfe_event_horizon()"))
    async with owner_db.transaction(None) as session:
        cache = await session.scalar(
            text(
                "SELECT seqcache FROM pg_sequence "
                "WHERE seqrelid = pg_get_serial_sequence('events', 'id')::regclass"
            )
        )
    assert last_id == event.id
    assert cache == 1


async def test_the_longest_retention_counts_enterprise_overrides(
    service_db: TenantDatabase, owner_db: TenantDatabase
) -> None:
    free = await create_tenant(owner_db)
    contracted = await create_tenant(owner_db, "enterprise", {"history_retention_days": 500})
    assert await retention.longest_retention(service_db, [free]) == 7
    assert await retention.longest_retention(service_db, [free, contracted]) == 500
    assert await retention.longest_retention(service_db, []) == 365


async def test_the_purge_drops_weeks_past_the_longest_retention_and_keeps_the_rest(
    service_db: TenantDatabase, owner_db: TenantDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await create_tenant(owner_db)
    longest = await retention.longest_retention(service_db, await all_tenants(service_db))
    now = datetime.now(UTC)
    old_at = week_of(now - timedelta(days=longest + 14)) + timedelta(hours=1)
    kept_at = now - timedelta(days=longest - 1)  # its week may start before the cutoff
    for at in (old_at, kept_at):
        await make_partition(owner_db, at)
    written = {at: await write_event(service_db, tenant, at) for at in (old_at, kept_at, now)}
    for at, event_id in written.items():
        assert await located(service_db, tenant, event_id) == partition_of(at)

    with caplog.at_level(logging.INFO, logger="engine.engine"):
        await purger(service_db).purge()

    left = await partitions(owner_db)
    assert partition_of(old_at) not in left
    assert {partition_of(kept_at), partition_of(now), "events_default"} <= left
    async with service_db.transaction(tenant) as session:
        kept = set(await session.scalars(text("SELECT id FROM events")))
    assert kept == {written[kept_at], written[now]}
    assert any(
        partition_of(old_at) in record.getMessage() and "dropped" in record.getMessage()
        for record in caplog.records
    )


async def test_the_purge_adds_the_coming_weeks_partitions(
    service_db: TenantDatabase, owner_db: TenantDatabase
) -> None:
    now = datetime.now(UTC)
    coming = {partition_of(now + timedelta(weeks=n)) for n in range(retention.WEEKS_AHEAD + 1)}
    await drop_partition(owner_db, partition_of(now + timedelta(weeks=retention.WEEKS_AHEAD)))
    assert not coming <= await partitions(owner_db)

    await purger(service_db).purge()

    assert coming <= await partitions(owner_db)


async def test_an_event_whose_week_had_no_partition_moves_into_one_at_the_purge(
    service_db: TenantDatabase, owner_db: TenantDatabase
) -> None:
    tenant = await create_tenant(owner_db)
    later = datetime.now(UTC) + timedelta(weeks=retention.WEEKS_AHEAD + 6)
    await drop_partition(owner_db, partition_of(later))
    event_id = await write_event(service_db, tenant, later)
    assert await located(service_db, tenant, event_id) == "events_default"

    rotation = await retention.rotate(service_db, await all_tenants(service_db))

    assert partition_of(later) in rotation.added
    assert await located(service_db, tenant, event_id) == partition_of(later)


async def test_two_purges_at_once_add_each_partition_once(
    postgres: ThrowawayDatabase, service_db: TenantDatabase, owner_db: TenantDatabase
) -> None:
    furthest = partition_of(datetime.now(UTC) + timedelta(weeks=retention.WEEKS_AHEAD))
    await drop_partition(owner_db, furthest)
    other = TenantDatabase(postgres.service_url, pool_size=1, max_overflow=0)
    try:
        ids = await all_tenants(service_db)
        rotations = await asyncio.gather(
            retention.rotate(service_db, ids), retention.rotate(other, ids)
        )
    finally:
        await other.dispose()
    assert [name for r in rotations for name in r.added].count(furthest) == 1
    assert furthest in await partitions(owner_db)


async def test_no_tenant_reads_another_through_events_or_any_partition(
    postgres: ThrowawayDatabase, service_db: TenantDatabase, owner_db: TenantDatabase
) -> None:
    tenant_a, tenant_b = [await create_tenant(owner_db) for _ in range(2)]
    now = datetime.now(UTC)
    own = await write_event(service_db, tenant_a, now)
    foreign = await write_event(service_db, tenant_b, now)
    async with service_db.transaction(tenant_a) as session:
        seen = set(await session.scalars(text("SELECT id FROM events")))
    assert own in seen and foreign not in seen

    for partition in (partition_of(now), "events_default"):
        with pytest.raises(DBAPIError) as caught:
            async with service_db.transaction(tenant_a) as session:
                await session.execute(text(f"SELECT id FROM {partition} WHERE id = {foreign}"))
        assert isinstance(caught.value.orig, psycopg.errors.InsufficientPrivilege)
    async with owner_db.transaction(tenant_b) as session:  # forced, and no policy: no rows
        assert await session.scalar(text(f"SELECT count(*) FROM {partition_of(now)}")) == 0

    async with owner_db.transaction(None) as session:
        catalog = (
            await session.execute(
                text(
                    "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
                    " has_table_privilege(:role, c.oid, 'SELECT, INSERT, UPDATE, DELETE'),"
                    " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)"
                    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'events'::regclass"
                ),
                {"role": postgres.service_role},
            )
        ).all()
    assert catalog
    assert {tuple(row[1:]) for row in catalog} == {(True, True, False, 0)}


async def test_the_migration_goes_down_and_up_keeping_every_event() -> None:
    with postgres_database() as created:
        service = TenantDatabase(created.service_url, pool_size=1, max_overflow=0)
        owner = TenantDatabase(created.admin_url, pool_size=1, max_overflow=0)
        try:
            await _round_trip(created, service, owner)
        finally:
            await service.dispose()
            await owner.dispose()


async def _round_trip(
    created: ThrowawayDatabase, service: TenantDatabase, owner: TenantDatabase
) -> None:
    tenant_a, tenant_b = [await create_tenant(owner) for _ in range(2)]
    now = datetime.now(UTC)
    old = now - timedelta(days=400)  # no partition of its own: in the default one
    for tenant in (tenant_a, tenant_b):
        for at in (old, now):
            await write_event(service, tenant, at)

    async def shape() -> tuple[str, list[Any], list[int], bool]:
        async with service.transaction(None) as session:
            every = [tuple(row) for row in await session.execute(text(EVERY_EVENT))]
        async with service.transaction(tenant_a) as session:
            own = list(await session.scalars(text("SELECT id FROM events ORDER BY id")))
        async with owner.transaction(None) as session:
            kind, grants = (
                await session.execute(
                    text(
                        "SELECT relkind::text, has_table_privilege(:role, 'events', "
                        "'SELECT, INSERT, DELETE') FROM pg_class WHERE oid = 'events'::regclass"
                    ),
                    {"role": created.service_role},
                )
            ).one()
        return kind, every, own, grants

    kind, before, own_before, _ = await shape()
    assert kind == "p" and len(before) == 4 and len(own_before) == 2

    downgrade(created.admin_url, "0007")
    kind, every, own, grants = await shape()
    assert (kind, every, own, grants) == ("r", before, own_before, True)
    added = await write_event(service, tenant_a, now)
    assert added > max(row[0] for row in before)

    upgrade(created.admin_url)
    kind, every, own, grants = await shape()
    assert (kind, own, grants) == ("p", [*own_before, added], True)
    assert every[:-1] == before and every[-1][0] == added
    assert await located(service, tenant_a, own_before[0]) == partition_of(old)
    async with service.transaction(None) as session:
        assert await session.scalar(text("SELECT last_id FROM wfe_event_horizon()")) == added
    assert await write_event(service, tenant_b, now) > added
