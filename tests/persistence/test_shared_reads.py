"""A process's shared read transaction (PostgreSQL): fresh, confined, and let go when quiet."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from engine import events, shared_reads
from engine.shared_reads import SharedReads
from persistence.models import Event
from service.tenants import service as tenants
from tenancy.context import TenantId
from tenancy.database import TenantDatabase

pytestmark = pytest.mark.postgres

UNCONFINED = select(Event.type).order_by(Event.id)
"""Names no tenant: only row-level security keeps the other tenant's rows out."""


@pytest.fixture
async def reads(service_db: TenantDatabase) -> AsyncIterator[SharedReads]:
    shared = SharedReads(service_db)
    yield shared
    await shared.close()


async def two_tenants(owner_db: TenantDatabase) -> list[TenantId]:
    ids = [TenantId(f"sr-{uuid.uuid4().hex[:12]}") for _ in range(2)]
    async with owner_db.transaction(None) as session:
        for tenant_id in ids:
            await tenants.create(session, tenant_id, tenant_id, "free")
    return ids


async def append(database: TenantDatabase, tenant: TenantId, kind: str) -> None:
    async with database.transaction(tenant) as session:
        await events.append(session, kind, {})


async def test_a_shared_read_sees_what_committed_after_its_transaction_began(
    service_db: TenantDatabase, owner_db: TenantDatabase, reads: SharedReads
) -> None:
    tenant, _ = await two_tenants(owner_db)
    assert [row.type for row in await reads.read(tenant, UNCONFINED)] == []
    await append(service_db, tenant, "first")
    await append(service_db, tenant, "second")
    assert [row.type for row in await reads.read(tenant, UNCONFINED)] == ["first", "second"]


async def test_a_shared_read_sees_only_its_tenants_rows_even_unfiltered(
    service_db: TenantDatabase, owner_db: TenantDatabase, reads: SharedReads
) -> None:
    mine, theirs = await two_tenants(owner_db)
    await append(service_db, mine, "mine")
    await append(service_db, theirs, "theirs")
    # One transaction for all three reads: the tenant is set again at each.
    assert [row.type for row in await reads.read(theirs, UNCONFINED)] == ["theirs"]
    assert [row.type for row in await reads.read(mine, UNCONFINED)] == ["mine"]
    assert [row.type for row in await reads.read(theirs, UNCONFINED)] == ["theirs"]


async def test_shared_reads_give_their_connection_back_once_quiet(
    service_db: TenantDatabase, owner_db: TenantDatabase, reads: SharedReads
) -> None:
    tenant, _ = await two_tenants(owner_db)
    pool = service_db.engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    await reads.read(tenant, UNCONFINED)
    assert pool.checkedout() == before + 1  # type: ignore[attr-defined]
    ends = time.monotonic() + 10 * shared_reads.TRANSACTION_SECONDS
    while pool.checkedout() > before:  # type: ignore[attr-defined]
        assert time.monotonic() < ends, "the quiet reader kept its connection"
        await asyncio.sleep(shared_reads.TRANSACTION_SECONDS / 5)
    # The connection went back as it came: it prepares statements again. (The pool
    # holds two at most, so these are all of them.)
    async with service_db.engine.connect() as one, service_db.engine.connect() as two:
        for connection in (one, two):
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None and driver.prepare_threshold is not None
