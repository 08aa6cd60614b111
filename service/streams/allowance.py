"""What a tenant's plan lets it watch live ("Monitoreo en tiempo real" in the tier table).

- limited (Free): `execution:<id>` topics only, and events without step outputs;
- full (Professional): `workflow:<id>` topics too, with step outputs;
- advanced (Enterprise): also the tenant-wide `all_workflows` and `all_executions`
  (which still need the admin role: `tenancy.roles.authorize_topics`).

Every plan caps the streams a tenant holds open at once (`max_subscriptions`), counted
per server process, where each stream holds its memory; the hub refuses one more.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.topics import Topics
from tenancy import TenantId
from tenancy.database import TenantDatabase
from tiers import TenantPlan
from tiers.plans import Monitoring
from tiers.policy import require_feature
from tiers.tenants import plan_of


@dataclass(frozen=True, slots=True)
class StreamAllowance:
    """How one tenant's stream is served."""

    tier: str
    max_subscriptions: int
    step_outputs: bool


def allowance(plan: TenantPlan, topics: Topics) -> StreamAllowance:
    """The plan's terms for a stream of `topics`; FAILED_PRECONDITION (TIER_RESTRICTION)
    for a topic the plan does not include."""
    if topics.all_workflows or topics.all_executions:
        require_feature(plan, "monitoring", Monitoring.ADVANCED)
    if topics.workflows:
        require_feature(plan, "monitoring", Monitoring.FULL)
    return StreamAllowance(
        tier=plan.tier,
        max_subscriptions=plan.limits.max_subscriptions,
        step_outputs=plan.limits.monitoring >= Monitoring.FULL,
    )


async def terms_for(database: TenantDatabase, tenant: TenantId, topics: Topics) -> StreamAllowance:
    """`allowance` under the tenant's plan as it stands now."""
    async with database.transaction(tenant) as session:
        plan = await plan_of(session, tenant)
    return allowance(plan, topics)
