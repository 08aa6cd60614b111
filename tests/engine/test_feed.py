"""The event feed: ids are read in order, and never past one a transaction in flight holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from engine import events
from engine.feed import Horizon, PostgresFeed, feed_for
from engine.wakeups import CommitNotifier, NotifyListener
from service.tenants import service as tenants
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.databases import ThrowawayDatabase
from tests.execution_helpers import eventually


def test_an_id_becomes_final_once_every_writer_of_its_reading_has_ended() -> None:
    horizon = Horizon()
    assert horizon.observe(10, frozenset()) == 10  # nobody writing: final at once
    assert horizon.observe(14, frozenset({"3/1", "4/7"})) == 10
    assert horizon.settling
    assert horizon.observe(15, frozenset({"4/7", "5/2"})) == 10  # 3/1 ended, 4/7 has not
    assert horizon.observe(15, frozenset({"5/2"})) == 14
    assert horizon.observe(16, frozenset()) == 16
    assert not horizon.settling


def test_merged_readings_wait_for_the_writers_of_both() -> None:
    horizon = Horizon()
    for value in range(1, 100):
        horizon.observe(value, frozenset({"1/1", f"2/{value}"}))  # 1/1 never ends
    assert horizon.final == 0
    assert horizon.observe(200, frozenset({"1/1"})) == 0
    assert horizon.observe(201, frozenset({"9/9"})) == 200


@pytest.fixture(scope="module")
async def service_db(postgres: ThrowawayDatabase) -> AsyncIterator[TenantDatabase]:
    db = TenantDatabase(postgres.service_url, pool_size=4, max_overflow=0)
    yield db
    await db.dispose()


@pytest.fixture(scope="module")
async def tenant(postgres: ThrowawayDatabase) -> TenantId:
    owner = TenantDatabase(postgres.admin_url, pool_size=1, max_overflow=0)
    tenant_id = TenantId(f"feed-{uuid.uuid4().hex[:12]}")
    async with owner.transaction(None) as session:
        await tenants.create(session, tenant_id, "Feed", "free")
    await owner.dispose()
    return tenant_id


async def test_a_later_id_committed_first_waits_for_the_earlier_one(
    service_db: TenantDatabase, tenant: TenantId
) -> None:
    feed = PostgresFeed(service_db)
    start = await feed.horizon()
    earlier_held = asyncio.Event()
    release = asyncio.Event()

    async def slow_writer() -> int:
        async with service_db.transaction(tenant) as session:
            event = await events.append(session, "slow", {})
            earlier_held.set()
            await release.wait()
        return event.id

    slow = asyncio.create_task(slow_writer())
    await earlier_held.wait()
    async with service_db.transaction(tenant) as session:
        fast = (await events.append(session, "fast", {})).id

    horizon = await feed.horizon()
    assert start <= horizon < fast
    assert [e.type for e in await feed.read(start, horizon, None, 100)] == []
    release.set()
    slow_id = await slow
    assert slow_id < fast
    horizon = await feed.horizon()  # the reading that named the slow writer is now final
    assert horizon >= fast
    found = await feed.read(start, horizon, [tenant], 100)
    assert [(e.id, e.type, e.tenant_id) for e in found] == [
        (slow_id, "slow", tenant),
        (fast, "fast", tenant),
    ]
    await feed.close()


async def test_a_rolled_back_id_never_holds_the_feed_up(
    service_db: TenantDatabase, tenant: TenantId
) -> None:
    feed = feed_for(service_db)
    with pytest.raises(RuntimeError):
        async with service_db.transaction(tenant) as session:
            lost = (await events.append(session, "lost", {})).id
            raise RuntimeError("roll back")
    async with service_db.transaction(tenant) as session:
        kept = (await events.append(session, "kept", {})).id
    await feed.horizon()
    assert await feed.horizon() >= kept > lost
    assert [e.type for e in await feed.read(lost - 1, kept, None, 10)] == ["kept"]
    await feed.close()


async def test_commits_wake_a_listener_with_far_fewer_notifications_than_commits(
    service_db: TenantDatabase, tenant: TenantId
) -> None:
    heard = 0

    def wake() -> None:
        nonlocal heard
        heard += 1

    listener = NotifyListener(service_db, wake)
    listener.start()
    await asyncio.wait_for(listener.listening.wait(), 10)
    notifier = CommitNotifier(service_db, interval=0.5)
    notifier.start()
    before = heard
    for n in range(40):
        async with service_db.transaction(tenant) as session:
            await events.append(session, "burst", {"n": n})
    await eventually(lambda: heard > before and notifier.sent > 0, "a wake-up")
    assert notifier.sent < 40
    await notifier.stop()
    await listener.stop()
