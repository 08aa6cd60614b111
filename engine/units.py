"""The engine's unit of work: one tenant's transaction, its plan, the clock, and the tasks
to publish once the transaction commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from engine.dispatch import TaskRef
from foundation.settings import Settings
from tenancy import TenantId
from tenancy.database import TenantDatabase
from tiers import TenantPlan, planned_transaction


@dataclass(frozen=True, slots=True)
class Timing:
    """The engine's clocks, from the settings."""

    lease: timedelta
    grace: timedelta
    max_countdown: timedelta
    default_step_timeout: timedelta
    max_takeovers: int


@dataclass(slots=True)
class Unit:
    """One transaction's working set: where, when, and what to publish after commit."""

    session: AsyncSession
    plan: TenantPlan
    now: datetime
    timing: Timing
    publish: list[TaskRef] = field(default_factory=list)


def utcnow() -> datetime:
    return datetime.now(UTC)


def timing_of(settings: Settings) -> Timing:
    return Timing(
        lease=timedelta(seconds=settings.lease_seconds),
        grace=timedelta(seconds=settings.dispatch_grace_seconds),
        max_countdown=timedelta(seconds=max(settings.dispatch_grace_seconds * 4, 60.0)),
        default_step_timeout=timedelta(seconds=settings.default_step_timeout_seconds),
        max_takeovers=settings.max_lease_takeovers,
    )


@asynccontextmanager
async def open_unit(
    database: TenantDatabase, tenant: TenantId, timing: Timing
) -> AsyncIterator[Unit]:
    """The tenant's transaction with its plan; `unit.publish` is to be sent after it commits."""
    async with planned_transaction(database, tenant) as work:
        yield Unit(work.session, work.plan, utcnow(), timing)
