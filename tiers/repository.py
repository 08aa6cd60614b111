"""SQL for quota counters; every change is one statement, so concurrent callers are safe."""

from __future__ import annotations

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.database import upsert_insert
from persistence.models import UsageCounter
from tenancy import TenantId


async def increment(
    session: AsyncSession,
    tenant_id: TenantId,
    metric: str,
    window: str,
    amount: int,
    limit: int | None,
) -> int | None:
    """Add `amount` unless that would pass `limit`; the new value, or None if refused.

    One upsert: a missing counter starts at `amount`, an existing one grows only while
    it stays within `limit` (the row lock orders concurrent callers).
    """
    if limit is not None and amount > limit:
        return None
    insert = upsert_insert(session.get_bind().dialect.name)
    counter = insert(UsageCounter).values(
        tenant_id=tenant_id, metric=metric, window=window, used=amount
    )
    grown = UsageCounter.used + amount
    statement = counter.on_conflict_do_update(
        index_elements=[UsageCounter.tenant_id, UsageCounter.metric, UsageCounter.window],
        set_={"used": grown},
        where=None if limit is None else grown <= limit,
    ).returning(UsageCounter.used)
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
