"""Concurrency slots: who runs now, who waits as queued, and admitting the next in line.

Every decision about a tenant's slots (take one, queue, give one back and admit the
oldest queued execution) runs under one per-tenant transaction lock on PostgreSQL
(SQLite serialises writers anyway). So a start racing a finish can never leave an
execution queued while a slot is free, and parallel starts never take more slots
than the plan has.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from engine import executions as execution_rows
from engine.events import TRANSACTION_SCOPED
from engine.rows import ExecutionRow
from foundation.errors import QuotaExhausted
from tenancy import TenantId
from tiers import Quota, TenantPlan, consume, release
from tiers import repository as counters
from tiers.ledger import CounterLedger

_LOCKED = TRANSACTION_SCOPED + "admission_locked"


async def lock_tenant(session: AsyncSession, tenant_id: TenantId) -> None:
    """Serialise slot decisions of one tenant until the transaction ends.

    Taken before the tenant's counter rows wherever both are taken, so two transactions
    never wait for each other in opposite orders.
    """
    if session.get_bind().dialect.name != "postgresql" or session.info.get(_LOCKED):
        return
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"wfe.admission:{tenant_id}"},
    )
    session.info[_LOCKED] = True


async def try_take_slot(
    session: AsyncSession, plan: TenantPlan, ledger: CounterLedger | None = None
) -> int | None:
    """Take a concurrency slot (from the batch's `ledger` when there is one); the slots
    now in use, or None when all are taken."""
    try:
        if ledger is not None:
            return ledger.consume(Quota.CONCURRENT_EXECUTIONS).used
        allowance = await consume(session, plan, Quota.CONCURRENT_EXECUTIONS)
    except QuotaExhausted:
        return None
    return allowance.used


async def give_back_slot(session: AsyncSession, plan: TenantPlan) -> None:
    await release(session, plan, Quota.CONCURRENT_EXECUTIONS)


SLOTS_SEEN_SECONDS: Final = 1.0
"""How long a tenant's slot count read here stands for the urgency rank of its next steps."""

_slots_seen: dict[TenantId, tuple[float, int]] = {}


async def slots_in_use(session: AsyncSession, tenant_id: TenantId) -> int:
    """The tenant's slots in use, for the urgency rank of a step it makes due.

    The rank is a scheduling hint, so a count read within the last second will do: a
    chain of dispatched steps does not read the counter at every step.
    """
    seen = _slots_seen.get(tenant_id)
    now = time.monotonic()
    if seen is not None and now - seen[0] < SLOTS_SEEN_SECONDS:
        return seen[1]
    used = await counters.read(session, tenant_id, Quota.CONCURRENT_EXECUTIONS.metric, "")
    if len(_slots_seen) >= 4096:
        _slots_seen.clear()
    _slots_seen[tenant_id] = (now, used)
    return used


async def oldest_queued(session: AsyncSession, limit: int) -> list[ExecutionRow]:
    """The tenant's longest-waiting queued executions, skipping any another transaction holds."""
    return await execution_rows.oldest_queued(session, limit)


async def queued_before(session: AsyncSession, created_at: datetime) -> int:
    """How many of the tenant's queued executions were started before `created_at`."""
    return await execution_rows.queued_before(session, created_at)
