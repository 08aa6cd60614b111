"""Operator actions on tenants: register one, change its tier or Enterprise limits."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import FieldViolation, InvalidInput, PermissionDenied
from service.persistence.models import Tenant
from service.tenants import repository
from tiers import TenantPlan, Tier, plan_for

TENANT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _tier(value: str) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        raise InvalidInput(
            f"unknown tier {value!r}",
            violations=[FieldViolation("tier", f"one of {', '.join(t.value for t in Tier)}")],
        ) from None


def _checked_overrides(tenant_id: str, tier: Tier, overrides: dict[str, Any]) -> dict[str, Any]:
    if overrides and tier is not Tier.ENTERPRISE:
        raise InvalidInput(
            "limit overrides are for the enterprise tier only",
            violations=[FieldViolation("overrides", "allowed on the enterprise tier only")],
        )
    try:
        plan_for(tenant_id, tier, overrides)
    except ValueError as exc:
        raise InvalidInput(str(exc), violations=[FieldViolation("overrides", str(exc))]) from exc
    return overrides


async def create(
    session: AsyncSession,
    tenant_id: str,
    name: str,
    tier: str,
    overrides: dict[str, Any] | None = None,
) -> Tenant:
    if not TENANT_ID.match(tenant_id):
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
        limit_overrides=_checked_overrides(tenant_id, tier_, overrides or {}),
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
    tenant.tier = tier_.value
    tenant.limit_overrides = _checked_overrides(tenant_id, tier_, overrides or {})
    return tenant


async def list_all(session: AsyncSession) -> Sequence[Tenant]:
    return await repository.list_all(session)


async def registered(session: AsyncSession, tenant_id: str) -> Tenant:
    """The calling tenant's row; PermissionDenied when a token grants an unregistered tenant."""
    tenant = await repository.get(session, tenant_id)
    if tenant is None:
        raise PermissionDenied(
            f"tenant {tenant_id!r} is not registered", metadata={"tenant_id": tenant_id}
        )
    return tenant


async def plan_of(session: AsyncSession, tenant_id: str) -> TenantPlan:
    """The plan in force for a registered tenant."""
    tenant = await registered(session, tenant_id)
    return plan_for(tenant.id, tenant.tier, tenant.limit_overrides)
