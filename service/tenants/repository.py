"""SQL for the tenant registry."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from service.persistence.models import Tenant


async def get(session: AsyncSession, tenant_id: str) -> Tenant | None:
    return await session.get(Tenant, tenant_id)


async def list_all(session: AsyncSession) -> Sequence[Tenant]:
    return (await session.scalars(select(Tenant).order_by(Tenant.id))).all()


async def all_ids(session: AsyncSession) -> list[str]:
    """Every tenant's id, for jobs that visit each tenant in turn (its own scope each time).

    On PostgreSQL the service role cannot list tenants; a function run as the owner
    gives it the ids only.
    """
    if session.get_bind().dialect.name == "postgresql":
        return list((await session.scalars(text("SELECT * FROM wfe_tenant_ids()"))).all())
    return list((await session.scalars(select(Tenant.id).order_by(Tenant.id))).all())


def add(session: AsyncSession, tenant: Tenant) -> None:
    session.add(tenant)
