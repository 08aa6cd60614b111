"""A server keeps each tenant's plan for a second: a tier change reaches it within that
second, and at once when the change went through this process's own service code."""

from __future__ import annotations

import asyncio
import time

from grpc import aio
from sqlalchemy import text

from service.tenants import service as tenants
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant
from tests.tiers.test_plan_limits import get_tenant
from tiers.plan_cache import FRESH_SECONDS


async def test_a_tier_changed_elsewhere_is_in_force_within_a_second(
    channel: aio.Channel, new_tenant: NewTenant, admin_database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    assert (await get_tenant(channel, tenant)).limits.max_workflows == 5  # read and kept
    async with admin_database.transaction(None) as session:
        # As another process (`wfe tenants set-tier`, an admin tool) writes it.
        await session.execute(
            text("UPDATE tenants SET tier = 'professional' WHERE id = :id"), {"id": tenant}
        )
    changed = time.monotonic()
    while (await get_tenant(channel, tenant)).limits.max_workflows != 50:
        assert time.monotonic() - changed < FRESH_SECONDS + 1.0, "the old plan is still in force"
        await asyncio.sleep(0.05)


async def test_a_tier_changed_through_the_service_is_in_force_at_once(
    channel: aio.Channel, new_tenant: NewTenant, admin_database: TenantDatabase
) -> None:
    tenant = await new_tenant("free")
    assert (await get_tenant(channel, tenant)).limits.max_workflows == 5
    async with admin_database.transaction(None) as session:
        await tenants.set_tier(session, tenant, "professional")
    assert (await get_tenant(channel, tenant)).limits.max_workflows == 50
