"""What a tenant's plan allows, and the refusals when it does not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

from foundation.errors import FeatureNotInPlan, QuotaExhausted
from tenancy import TenantId
from tiers.plans import PLANS, PlanLimits, Tier


@dataclass(frozen=True, slots=True)
class TenantPlan:
    """A tenant's tier and the limits in force for it."""

    tenant_id: TenantId
    tier: Tier
    limits: PlanLimits


def plan_for(
    tenant_id: TenantId,
    tier: str,
    overrides: dict[str, Any] | None = None,
    adapters: Iterable[str] = (),
) -> TenantPlan:
    """The effective plan: the tier's limits, with overrides applied on Enterprise only.

    Overrides stored for a tenant that was later moved off Enterprise are ignored, so a
    downgrade takes the lower tier's limits at once.
    """
    tier_ = Tier(tier)
    limits = PLANS[tier_]
    if tier_ is Tier.ENTERPRISE and overrides:
        limits = limits.with_overrides(overrides)
    if tier_ is Tier.ENTERPRISE and adapters:
        limits = replace(limits, adapters=frozenset(adapters))
    return TenantPlan(tenant_id=tenant_id, tier=tier_, limits=limits)


def require_feature(plan: TenantPlan, feature: str, needed: IntEnum | bool) -> None:
    """Raise FeatureNotInPlan unless the plan's `feature` reaches `needed`.

    `feature` names a level field of PlanLimits (e.g. "step_types", "versioning")
    or a boolean one (e.g. "webhooks").
    """
    have = getattr(plan.limits, feature)
    if isinstance(needed, bool):
        allowed = bool(have) or not needed
        required, current = str(needed).lower(), str(have).lower()
    else:
        allowed = have >= needed
        required, current = needed.name.lower(), have.name.lower()
    if not allowed:
        raise FeatureNotInPlan(
            f"the {plan.tier} tier does not include {feature}={required} (it has {current})",
            metadata={
                "tier": plan.tier,
                "feature": feature,
                "required": required,
                "limit": current,
            },
        )


def require_within(plan: TenantPlan, limit: str, value: int) -> None:
    """Raise QuotaExhausted if `value` exceeds the plan's numeric `limit` (None: unlimited)."""
    maximum: int | None = getattr(plan.limits, limit)
    if maximum is not None and value > maximum:
        raise QuotaExhausted(
            f"{limit} is {maximum} on the {plan.tier} tier; {value} requested",
            metadata={"tier": plan.tier, "quota": limit, "limit": maximum, "used": value},
        )
