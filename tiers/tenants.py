"""The tenant registry: its rows, and the plan in force for a registered tenant."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.errors import PermissionDenied
from persistence.models import Tenant
from tenancy import TenantId, decode_tenant
from tiers import plan_cache
from tiers.policy import TenantPlan, plan_for


async def get(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def list_all(session: AsyncSession) -> Sequence[Tenant]:
    return (await session.scalars(select(Tenant).order_by(Tenant.id))).all()


async def all_ids(session: AsyncSession) -> list[TenantId]:
    """Every tenant's id, for jobs that visit each tenant in turn (its own scope each time).

    On PostgreSQL the service role cannot list tenants; a function run as the owner
    gives it the ids only.
    """
    if session.get_bind().dialect.name == "postgresql":
        ids = (await session.scalars(text("SELECT * FROM wfe_tenant_ids()"))).all()
    else:
        ids = (await session.scalars(select(Tenant.id).order_by(Tenant.id))).all()
    return [decode_tenant(tenant_id) for tenant_id in ids]


def add(session: AsyncSession, tenant: Tenant) -> None:
    session.add(tenant)


async def registered(session: AsyncSession, tenant_id: TenantId) -> Tenant:
    """The calling tenant's row; PermissionDenied when a token grants an unregistered tenant."""
    tenant = await get(session, tenant_id)
    if tenant is None:
        raise PermissionDenied(
            f"tenant {tenant_id!r} is not registered", metadata={"tenant_id": tenant_id}
        )
    return tenant


async def plan_of(session: AsyncSession, tenant_id: TenantId) -> TenantPlan:
    """The plan in force for a registered tenant (as read within the last second)."""
    plan = plan_cache.cached(session, tenant_id)
    if plan is None:
        tenant = await registered(session, tenant_id)
        plan = plan_for(tenant_id, tenant.tier, tenant.limit_overrides, tenant.adapters or ())
        plan_cache.keep(session, plan)
    return plan


def plan_changes(session: AsyncSession, tenant_id: TenantId) -> None:
    """Call before changing a tenant's tier or limits in `session`'s transaction."""
    plan_cache.forget(session, tenant_id)
