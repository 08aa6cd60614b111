"""Service tiers: the plan table, per-tenant limits and quota accounting.

Every plan decision goes through this package: `plan_for` says what a tenant may do,
`require_feature`/`require_within` refuse what its plan excludes, and `quotas`
counts what it consumes.
"""

from tiers.plans import (
    PLANS,
    LogDetail,
    Monitoring,
    PlanLimits,
    StepTypeAccess,
    TemplateAccess,
    Tier,
    Versioning,
)
from tiers.policy import TenantPlan, plan_for, require_feature, require_within
from tiers.quotas import Allowance, Quota, allowance, consume, release, usage
from tiers.work import PlannedSession, planned_transaction

__all__ = [
    "PLANS",
    "Allowance",
    "LogDetail",
    "Monitoring",
    "PlanLimits",
    "PlannedSession",
    "Quota",
    "StepTypeAccess",
    "TemplateAccess",
    "TenantPlan",
    "Tier",
    "Versioning",
    "allowance",
    "consume",
    "plan_for",
    "planned_transaction",
    "release",
    "require_feature",
    "require_within",
    "usage",
]
