"""SQL for the tenant registry."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.persistence.models import Tenant


async def get(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def list_all(session: AsyncSession) -> Sequence[Tenant]:
    return (await session.scalars(select(Tenant).order_by(Tenant.id))).all()


def add(session: AsyncSession, tenant: Tenant) -> None:
    session.add(tenant)
