"""The event log's weekly partitions on PostgreSQL: added ahead of time, dropped past retention.

`events` is partitioned by week of `created_at` (migration 0008 says why a week). Before
its per-tenant deletes, the purge calls `rotate`: it adds the partitions of this week and
the next `WEEKS_AHEAD` (and of any week whose rows fell into the default partition, moving
them in), then drops every partition whose whole week ended more than the longest retention
of any tenant ago. So the bulk of old events goes by DROP, and the per-tenant deletes, for
shorter retentions, only touch partitions that stay.

Both steps run as the owner, in functions of migration 0008, each in a transaction of its own
under one advisory lock: two purges at once add and drop each partition once. A DROP takes
an ACCESS EXCLUSIVE lock on the parent until its transaction ends, so readers and writers of
the log queue behind it while it waits for the ones before it: it waits at most two seconds,
and a partition it could not drop goes at the next purge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, text

from engine.shared_reads import SharedReads
from persistence.models import Tenant
from tenancy import TenantId
from tenancy.database import TenantDatabase
from tiers import PLANS, plan_for

WEEKS_AHEAD: Final = 4
"""Weeks made ahead of the current one: a purge that stops for a month loses no partition.
Rows of a week with none still land in the default partition, and move out later."""

LONGEST_DEFAULT: Final = max(limits.history_retention_days for limits in PLANS.values())
"""The retention assumed when no tenant is registered: the longest any tier gives."""


@dataclass(frozen=True, slots=True)
class Rotation:
    """What one `rotate` did: partitions added and dropped, and the retention it kept."""

    added: tuple[str, ...]
    dropped: tuple[str, ...]
    keep_days: int


async def longest_retention(database: TenantDatabase, tenants: Iterable[TenantId]) -> int:
    """The longest history retention in force for any of `tenants`, overrides included.

    Each tenant's row is read in its own scope, all in one shared read transaction
    (`engine.shared_reads`): no transaction per tenant.
    """
    longest = 0
    reads = SharedReads(database)
    try:
        for tenant in tenants:
            rows = await reads.read(
                tenant,
                select(Tenant.tier, Tenant.limit_overrides).where(Tenant.id == tenant),
            )
            for row in rows:
                plan = plan_for(tenant, row.tier, row.limit_overrides)  # adapters: no bearing
                longest = max(longest, plan.limits.history_retention_days)
    finally:
        await reads.close()
    return longest or LONGEST_DEFAULT


async def rotate(database: TenantDatabase, tenants: Iterable[TenantId]) -> Rotation:
    """Add the coming weeks' partitions, then drop those past the longest retention."""
    keep_days = await longest_retention(database, tenants)
    async with database.transaction(None) as session:
        added = await session.scalars(
            text("SELECT * FROM wfe_event_partitions_add(:weeks)"), {"weeks": WEEKS_AHEAD}
        )
        names = tuple(added)
    async with database.transaction(None) as session:
        dropped = await session.scalars(
            text("SELECT * FROM wfe_event_partitions_drop(:days)"), {"days": keep_days}
        )
        return Rotation(names, tuple(dropped), keep_days)
