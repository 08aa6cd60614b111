"""SQL for quota counters; every change is one statement, so concurrent callers are safe."""

from __future__ import annotations

from sqlalchemy import ColumnElement, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.database import upsert_insert
from persistence.models import UsageCounter
from tenancy import TenantId

_KEY = [UsageCounter.tenant_id, UsageCounter.metric, UsageCounter.window]
"""What names one counter: its unique key."""


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
        index_elements=_KEY,
        set_={"used": grown},
        where=None if limit is None else grown <= limit,
    ).returning(UsageCounter.used)
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_many(
    session: AsyncSession, tenant_id: TenantId, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Lock the counters (metric, window) for the transaction, making missing ones at zero;
    each one's value. One upsert whose DO UPDATE changes nothing but takes the row lock."""
    insert = upsert_insert(session.get_bind().dialect.name)
    rows = insert(UsageCounter).values(
        [{"tenant_id": tenant_id, "metric": m, "window": w, "used": 0} for m, w in keys]
    )
    statement = rows.on_conflict_do_update(
        index_elements=_KEY,
        set_={"used": UsageCounter.used},
    ).returning(UsageCounter.metric, UsageCounter.window, UsageCounter.used)
    found = (await session.execute(statement)).all()
    return {(str(metric), str(window)): int(used) for metric, window, used in found}


async def add(
    session: AsyncSession, tenant_id: TenantId, metric: str, window: str, amount: int
) -> None:
    """Add `amount` to a counter the transaction holds locked (`lock_many`): no limit here,
    the caller checked it against the locked value."""
    await session.execute(
        update(UsageCounter)
        .where(*_counter(tenant_id, metric, window))
        .values(used=UsageCounter.used + amount)
    )


async def decrement(
    session: AsyncSession, tenant_id: TenantId, metric: str, window: str, amount: int
) -> None:
    """Subtract `amount`, never below zero."""
    await session.execute(
        update(UsageCounter)
        .where(*_counter(tenant_id, metric, window))
        .values(used=case((UsageCounter.used > amount, UsageCounter.used - amount), else_=0))
    )


async def read(session: AsyncSession, tenant_id: TenantId, metric: str, window: str) -> int:
    used = await session.scalar(
        select(UsageCounter.used).where(*_counter(tenant_id, metric, window))
    )
    return int(used or 0)


def _counter(tenant_id: TenantId, metric: str, window: str) -> tuple[ColumnElement[bool], ...]:
    return (
        UsageCounter.tenant_id == tenant_id,
        UsageCounter.metric == metric,
        UsageCounter.window == window,
    )
