"""Tenants: the caller's own overview, and operator actions (register, change tier or limits)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from engine.tools import installed
from foundation.errors import FieldViolation, InvalidInput
from persistence.models import Tenant
from tenancy import TENANT_ID_FORMAT, TenantId
from tenancy.database import TenantDatabase
from tiers import PLANS, Allowance, Quota, TenantPlan, Tier, quotas
from tiers import tenants as repository
from tiers.tenants import plan_of, registered


def _tier(value: str) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        raise InvalidInput(
            f"unknown tier {value!r}",
            violations=[FieldViolation("tier", f"one of {', '.join(t.value for t in Tier)}")],
        ) from None


def _checked_overrides(tier: Tier, overrides: dict[str, Any]) -> dict[str, Any]:
    if overrides and tier is not Tier.ENTERPRISE:
        raise InvalidInput(
            "limit overrides are for the enterprise tier only",
            violations=[FieldViolation("overrides", "allowed on the enterprise tier only")],
        )
    try:
        PLANS[tier].with_overrides(overrides)
    except ValueError as exc:
        raise InvalidInput(str(exc), violations=[FieldViolation("overrides", str(exc))]) from exc
    return overrides


def _checked_adapters(tier: Tier, names: Sequence[str]) -> list[str]:
    """Installed adapters only, and on the enterprise tier only."""
    if names and tier is not Tier.ENTERPRISE:
        raise InvalidInput(
            "custom adapters are for the enterprise tier only",
            violations=[FieldViolation("adapters", "allowed on the enterprise tier only")],
        )
    catalog = installed()
    for name in names:
        spec = catalog.spec(name)
        if spec is None or not spec.adapter:
            known = ", ".join(s.name for s in catalog.specs() if s.adapter) or "none"
            raise InvalidInput(
                f"no adapter named {name!r} is installed; installed adapters: {known}",
                violations=[FieldViolation("adapters", f"{name!r} is not an installed adapter")],
            )
    return sorted(set(names))


async def create(
    session: AsyncSession,
    tenant_id: str,
    name: str,
    tier: str,
    overrides: dict[str, Any] | None = None,
    adapters: Sequence[str] = (),
) -> Tenant:
    if not TENANT_ID_FORMAT.fullmatch(tenant_id):
        raise InvalidInput(
            f"invalid tenant id {tenant_id!r}",
            violations=[FieldViolation("id", "1-63 lowercase letters, digits or inner dashes")],
        )
    if await repository.get(session, tenant_id) is not None:
        raise InvalidInput(
            f"tenant {tenant_id!r} already exists",
            violations=[FieldViolation("id", "already exists")],
        )
    tier_ = _tier(tier)
    tenant = Tenant(
        id=tenant_id,
        name=name or tenant_id,
        tier=tier_.value,
        limit_overrides=_checked_overrides(tier_, overrides or {}),
        adapters=_checked_adapters(tier_, adapters),
    )
    repository.add(session, tenant)
    return tenant


async def set_tier(
    session: AsyncSession, tenant_id: str, tier: str, overrides: dict[str, Any] | None = None
) -> Tenant:
    tenant = await repository.get(session, tenant_id)
    if tenant is None:
        raise InvalidInput(
            f"no tenant {tenant_id!r}", violations=[FieldViolation("id", "no such tenant")]
        )
    tier_ = _tier(tier)
    repository.plan_changes(session, TenantId(tenant_id))
    tenant.tier = tier_.value
    tenant.limit_overrides = _checked_overrides(tier_, overrides or {})
    return tenant


async def set_adapters(session: AsyncSession, tenant_id: str, names: Sequence[str]) -> Tenant:
    """Enable exactly `names` (installed adapters) for an Enterprise tenant."""
    tenant = await repository.get(session, tenant_id)
    if tenant is None:
        raise InvalidInput(
            f"no tenant {tenant_id!r}", violations=[FieldViolation("id", "no such tenant")]
        )
    checked = _checked_adapters(_tier(tenant.tier), names)
    repository.plan_changes(session, TenantId(tenant_id))
    tenant.adapters = checked
    return tenant


async def list_all(session: AsyncSession) -> Sequence[Tenant]:
    return await repository.list_all(session)


async def overview(
    database: TenantDatabase, tenant_id: TenantId
) -> tuple[Tenant, TenantPlan, dict[Quota, Allowance]]:
    """The calling tenant's row, the plan in force and what it has used of each quota."""
    async with database.transaction(tenant_id) as session:
        tenant = await registered(session, tenant_id)
        plan = await plan_of(session, tenant_id)
        return tenant, plan, await quotas.usage(session, plan)
