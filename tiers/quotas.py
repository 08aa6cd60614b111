"""Counted quotas: how much a tenant has used, and consuming more within its plan."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from sqlalchemy.ext.asyncio import AsyncSession

from foundation.errors import QuotaExhausted
from tiers import repository
from tiers.plans import Tier
from tiers.policy import TenantPlan


class Quota(Enum):
    """A counted quota: the plan limit that bounds it, and whether it resets daily."""

    WORKFLOWS = ("workflows", "max_workflows", False)
    CONCURRENT_EXECUTIONS = ("concurrent_executions", "max_concurrent_executions", False)
    EXECUTIONS_PER_DAY = ("executions", "max_executions_per_day", True)
    CUSTOM_TEMPLATES = ("custom_templates", "max_custom_templates", False)

    def __init__(self, metric: str, limit_name: str, daily: bool) -> None:
        self.metric = metric
        self.limit_name = limit_name
        self.daily = daily


@dataclass(frozen=True, slots=True)
class Allowance:
    """How much of a quota is used and left; `limit`/`remaining` None means unlimited."""

    quota: Quota
    tier: Tier
    limit: int | None
    used: int
    resets_at: datetime | None

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


def window_of(quota: Quota, now: datetime) -> tuple[str, datetime | None]:
    """The counter window `now` falls in ("" for a gauge) and when it resets."""
    if not quota.daily:
        return "", None
    day = now.astimezone(UTC).date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return day.isoformat(), midnight


async def allowance(
    session: AsyncSession, plan: TenantPlan, quota: Quota, *, now: datetime | None = None
) -> Allowance:
    """How much of `quota` the tenant has used and may still use."""
    window, resets_at = window_of(quota, now or datetime.now(UTC))
    used = await repository.read(session, plan.tenant_id, quota.metric, window)
    limit = getattr(plan.limits, quota.limit_name)
    return Allowance(quota, plan.tier, limit, used, resets_at)


async def consume(
    session: AsyncSession,
    plan: TenantPlan,
    quota: Quota,
    amount: int = 1,
    *,
    now: datetime | None = None,
) -> Allowance:
    """Take `amount` of `quota` in the caller's transaction, or raise QuotaExhausted.

    The check and the increment are one statement, so parallel callers can never
    take more than the limit between them; rolling back the transaction gives it back.
    """
    window, resets_at = window_of(quota, now or datetime.now(UTC))
    limit = getattr(plan.limits, quota.limit_name)
    used = await repository.increment(session, plan.tenant_id, quota.metric, window, amount, limit)
    if used is None:
        current = await repository.read(session, plan.tenant_id, quota.metric, window)
        raise exhausted(plan, quota, limit, current, amount, resets_at)
    return Allowance(quota, plan.tier, limit, used, resets_at)


def exhausted(
    plan: TenantPlan,
    quota: Quota,
    limit: int | None,
    current: int,
    amount: int,
    resets_at: datetime | None,
) -> QuotaExhausted:
    """The refusal of taking `amount` more of `quota` when `current` is used."""
    metadata: dict[str, object] = {
        "tier": plan.tier,
        "quota": quota.limit_name,
        "limit": limit,
        "used": current,
        "requested": amount,
    }
    message = f"{quota.limit_name} is {limit} on the {plan.tier} tier and {current} are used"
    if resets_at is not None:
        metadata["resets_at"] = resets_at.isoformat()
        message += f"; it resets at {resets_at.isoformat()}"
    return QuotaExhausted(message, metadata=metadata)


async def release(session: AsyncSession, plan: TenantPlan, quota: Quota, amount: int = 1) -> None:
    """Give back `amount` of a gauge quota (a workflow deleted, an execution finished)."""
    if quota.daily:
        raise ValueError(f"{quota.name} is a daily quota; it resets, it is not released")
    await repository.decrement(session, plan.tenant_id, quota.metric, "", amount)


async def usage(
    session: AsyncSession, plan: TenantPlan, *, now: datetime | None = None
) -> dict[Quota, Allowance]:
    """Every quota's allowance for the tenant."""
    moment = now or datetime.now(UTC)
    return {q: await allowance(session, plan, q, now=moment) for q in Quota}
