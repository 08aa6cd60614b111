"""A tenant's unit of work: one transaction confined to the tenant, with its plan in force."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from tenancy import TenantId
from tenancy.database import TenantDatabase
from tiers.policy import TenantPlan
from tiers.tenants import plan_of


@dataclass(frozen=True, slots=True)
class PlannedSession:
    """A session in the tenant's transaction and the plan every decision in it uses."""

    session: AsyncSession
    plan: TenantPlan


@asynccontextmanager
async def planned_transaction(
    database: TenantDatabase, tenant: TenantId
) -> AsyncIterator[PlannedSession]:
    """Open the tenant's transaction and read its plan once, for the whole unit of work.

    Raises PermissionDenied when the tenant is not registered.
    """
    async with database.transaction(tenant) as session:
        yield PlannedSession(session, await plan_of(session, tenant))
