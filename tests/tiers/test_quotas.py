"""Quota accounting: atomic consumption, refusals with their metadata, daily reset."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from foundation.errors import FeatureNotInPlan, QuotaExhausted, Reason
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant
from tiers import (
    Quota,
    StepTypeAccess,
    Versioning,
    allowance,
    consume,
    plan_for,
    release,
    require_feature,
    require_within,
)


async def test_parallel_consumers_never_pass_the_limit(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant("free")
    plan = plan_for(tenant_id, "free")
    async with database.transaction(TenantId(tenant_id)) as session:
        await consume(session, plan, Quota.WORKFLOWS, 4)

    async def take_one() -> bool:
        try:
            async with database.transaction(TenantId(tenant_id)) as session:
                await consume(session, plan, Quota.WORKFLOWS)
        except QuotaExhausted:
            return False
        return True

    outcomes = await asyncio.gather(*(take_one() for _ in range(20)))
    assert outcomes.count(True) == 1
    async with database.transaction(TenantId(tenant_id)) as session:
        assert (await allowance(session, plan, Quota.WORKFLOWS)).used == 5


async def test_exhausted_quota_says_tier_limit_and_used(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant("free")
    plan = plan_for(tenant_id, "free")
    with pytest.raises(QuotaExhausted) as caught:
        async with database.transaction(TenantId(tenant_id)) as session:
            await consume(session, plan, Quota.CONCURRENT_EXECUTIONS, 2)
            await consume(session, plan, Quota.CONCURRENT_EXECUTIONS)
    error = caught.value
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == Reason.TIER_RESTRICTION
    assert error.metadata["tier"] == "free"
    assert error.metadata["limit"] == "2"
    assert error.metadata["used"] == "2"


async def test_refused_transaction_gives_its_consumption_back(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant("free")
    plan = plan_for(tenant_id, "free")
    with pytest.raises(RuntimeError):
        async with database.transaction(TenantId(tenant_id)) as session:
            await consume(session, plan, Quota.WORKFLOWS, 3)
            raise RuntimeError("the write this quota was for failed")
    async with database.transaction(TenantId(tenant_id)) as session:
        assert (await allowance(session, plan, Quota.WORKFLOWS)).used == 0


async def test_daily_quota_resets_at_utc_midnight(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant("free")
    plan = plan_for(tenant_id, "free")
    today = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    async with database.transaction(TenantId(tenant_id)) as session:
        await consume(session, plan, Quota.EXECUTIONS_PER_DAY, 100, now=today)
    with pytest.raises(QuotaExhausted) as caught:
        async with database.transaction(TenantId(tenant_id)) as session:
            await consume(session, plan, Quota.EXECUTIONS_PER_DAY, now=today)
    assert caught.value.metadata["resets_at"] == "2026-11-23T00:00:00+00:00"
    async with database.transaction(TenantId(tenant_id)) as session:
        after = await consume(
            session, plan, Quota.EXECUTIONS_PER_DAY, now=today + timedelta(minutes=2)
        )
    assert (after.used, after.remaining) == (1, 99)


async def test_release_never_goes_below_zero(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant("professional")
    plan = plan_for(tenant_id, "professional")
    async with database.transaction(TenantId(tenant_id)) as session:
        await consume(session, plan, Quota.WORKFLOWS, 2)
        await release(session, plan, Quota.WORKFLOWS, 5)
        assert (await allowance(session, plan, Quota.WORKFLOWS)).used == 0


async def test_unlimited_quota_always_admits(
    database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant("enterprise")
    plan = plan_for(tenant_id, "enterprise")
    async with database.transaction(TenantId(tenant_id)) as session:
        taken = await consume(session, plan, Quota.EXECUTIONS_PER_DAY, 1_000_000)
    assert (taken.limit, taken.remaining, taken.used) == (None, None, 1_000_000)


def test_feature_outside_the_plan_is_a_failed_precondition() -> None:
    free = plan_for("t", "free")
    with pytest.raises(FeatureNotInPlan) as caught:
        require_feature(free, "step_types", StepTypeAccess.ADVANCED)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.metadata == {
        "tier": "free",
        "feature": "step_types",
        "required": "advanced",
        "limit": "basic",
    }
    with pytest.raises(FeatureNotInPlan):
        require_feature(free, "webhooks", True)
    require_feature(plan_for("t", "professional"), "versioning", Versioning.BASIC)


def test_size_limit_refusal_names_the_limit_and_the_request() -> None:
    with pytest.raises(QuotaExhausted) as caught:
        require_within(plan_for("t", "professional"), "max_steps_per_workflow", 31)
    assert caught.value.metadata["limit"] == "30"
    assert caught.value.metadata["used"] == "31"
    require_within(plan_for("t", "enterprise"), "max_steps_per_workflow", 10_000)


def test_overrides_apply_to_enterprise_only_and_are_checked() -> None:
    overrides = {"max_concurrent_executions": 400}
    assert plan_for("t", "enterprise", overrides).limits.max_concurrent_executions == 400
    assert plan_for("t", "professional", overrides).limits.max_concurrent_executions == 10
    for bad in ({"webhooks": True}, {"max_workflows": 0}, {"history_retention_days": None}):
        with pytest.raises(ValueError):
            plan_for("t", "enterprise", bad)
