"""SQL for quota counters; every change is one statement, so concurrent callers are safe."""

from __future__ import annotations

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.database import upsert_insert
from persistence.models import UsageCounter
from tenancy import TenantId


async def _ensure(session: AsyncSession, tenant_id: TenantId, metric: str, window: str) -> None:
    values = {"tenant_id": tenant_id, "metric": metric, "window": window, "used": 0}
    insert = upsert_insert(session.get_bind().dialect.name)
    await session.execute(insert(UsageCounter).values(values).on_conflict_do_nothing())


async def increment(
    session: AsyncSession,
    tenant_id: TenantId,
    metric: str,
    window: str,
    amount: int,
    limit: int | None,
) -> int | None:
    """Add `amount` unless that would pass `limit`; the new value, or None if refused."""
    await _ensure(session, tenant_id, metric, window)
    statement = (
        update(UsageCounter)
        .where(
            UsageCounter.tenant_id == tenant_id,
            UsageCounter.metric == metric,
            UsageCounter.window == window,
        )
        .values(used=UsageCounter.used + amount)
        .returning(UsageCounter.used)
    )
    if limit is not None:
        statement = statement.where(UsageCounter.used + amount <= limit)
    return (await session.execute(statement)).scalar_one_or_none()


async def decrement(
    session: AsyncSession, tenant_id: TenantId, metric: str, window: str, amount: int
) -> None:
    """Subtract `amount`, never below zero."""
    await session.execute(
        update(UsageCounter)
        .where(
            UsageCounter.tenant_id == tenant_id,
            UsageCounter.metric == metric,
            UsageCounter.window == window,
        )
        .values(used=case((UsageCounter.used > amount, UsageCounter.used - amount), else_=0))
    )


async def read(session: AsyncSession, tenant_id: TenantId, metric: str, window: str) -> int:
    used = await session.scalar(
        select(UsageCounter.used).where(
            UsageCounter.tenant_id == tenant_id,
            UsageCounter.metric == metric,
            UsageCounter.window == window,
        )
    )
    return int(used or 0)
