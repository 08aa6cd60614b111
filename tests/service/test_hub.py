"""The event hub under cancellation: streams and the hub stop at any moment, cleanly."""

from __future__ import annotations

import asyncio
import random

import pytest

from engine import events
from engine.topics import Topics
from service.streams.hub import EventHub
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant


@pytest.mark.slow
async def test_streams_and_hubs_cut_off_at_any_moment_never_wedge_the_database(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """A read cancelled midway could leave its connection holding SQLite's write lock."""
    tenant = TenantId(await new_tenant())
    writing = True

    async def write() -> None:
        while writing:
            async with database.transaction(tenant) as session:
                events.record(session, "workflow_execution_log", {}, execution_id="busy")
            await asyncio.sleep(0.001)

    async def follow(hub: EventHub) -> None:
        async for _ in hub.stream(tenant, Topics.of_execution("busy"), 0):
            pass

    writer = asyncio.create_task(write())
    chooser = random.Random(7)
    for _ in range(40):
        hub = EventHub(database, heartbeat_seconds=0.2, buffer_events=16, poll_seconds=0.05)
        await hub.start()
        followers = [asyncio.create_task(follow(hub)) for _ in range(4)]
        await asyncio.sleep(chooser.random() * 0.03)
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        await hub.stop()
        assert hub.registry.count() == 0
    writing = False
    async with asyncio.timeout(10):  # a wedged database would hold the writer for 30 s
        await writer
        async with database.transaction(tenant) as session:
            await events.append(session, "after", {}, execution_id="busy")
