"""How many executions wait for a concurrency slot, by tier: the admission gauge.

Row-level security confines every read to one tenant, so this asks each tenant in turn:
a beat process reads it when scraped, and keeps the answer a while (`Backlog`), so the
cost is one short transaction per tenant per interval, whatever the scrape rate.
"""

from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import func, select

from engine.executions import EXECUTIONS
from persistence.models import ExecutionStatus
from tenancy.database import TenantDatabase
from tiers import planned_transaction
from tiers import tenants as tenant_rows


async def queued_by_tier(database: TenantDatabase) -> dict[str, int]:
    """Executions in status `queued`, summed by their tenant's tier."""
    async with database.transaction(None) as session:
        tenant_ids = await tenant_rows.all_ids(session)
    totals: Counter[str] = Counter()
    for tenant_id in tenant_ids:
        async with planned_transaction(database, tenant_id) as work:
            queued = await work.session.scalar(
                select(func.count())
                .select_from(EXECUTIONS)
                .where(
                    EXECUTIONS.c.tenant_id == tenant_id,
                    EXECUTIONS.c.status == ExecutionStatus.QUEUED,
                )
            )
            totals[work.plan.tier.value] += int(queued or 0)
    return dict(totals)


class Backlog:
    """`queued_by_tier`, read at most once per `max_age` seconds."""

    def __init__(self, database: TenantDatabase, max_age: float = 15.0) -> None:
        self._database = database
        self._max_age = max_age
        self._read_at = -float("inf")
        self._last: dict[str, int] = {}

    async def read(self) -> dict[str, int]:
        if time.monotonic() - self._read_at >= self._max_age:
            self._last = await queued_by_tier(self._database)
            self._read_at = time.monotonic()
        return self._last
