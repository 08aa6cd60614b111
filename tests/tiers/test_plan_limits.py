"""The seed's tier table, read back through GetTenant for each tier."""

from __future__ import annotations

from typing import Any

import pytest
from grpc import aio

from tests.conftest import NewTenant, auth
from wfe.v1 import tenant_pb2, tenant_pb2_grpc

# Written out from the tier table, independently of tiers/plans.py, so a wrong
# entry there fails here. None: unlimited (the field is unset).
EXPECTED: dict[str, dict[str, Any]] = {
    "free": {
        "tier": tenant_pb2.TIER_FREE,
        "max_workflows": 5,
        "max_steps_per_workflow": 10,
        "max_concurrent_executions": 2,
        "max_executions_per_day": 100,
        "history_retention_days": 7,
        "max_execution_seconds": 300,
        "max_templates": 5,
        "max_custom_templates": 0,
        "step_types": tenant_pb2.STEP_TYPE_ACCESS_BASIC,
        "versioning": tenant_pb2.VERSIONING_LEVEL_NONE,
        "templates": tenant_pb2.TEMPLATE_ACCESS_BASIC,
        "log_detail": tenant_pb2.LOG_DETAIL_NONE,
        "monitoring": tenant_pb2.MONITORING_LEVEL_LIMITED,
        "webhooks": False,
        "max_definition_bytes": 65536,
        "max_input_bytes": 65536,
        "max_output_bytes": 262144,
        "max_subscriptions": 3,
    },
    "professional": {
        "tier": tenant_pb2.TIER_PROFESSIONAL,
        "max_workflows": 50,
        "max_steps_per_workflow": 30,
        "max_concurrent_executions": 10,
        "max_executions_per_day": 1000,
        "history_retention_days": 30,
        "max_execution_seconds": 1800,
        "max_templates": None,
        "max_custom_templates": 0,
        "step_types": tenant_pb2.STEP_TYPE_ACCESS_ADVANCED,
        "versioning": tenant_pb2.VERSIONING_LEVEL_BASIC,
        "templates": tenant_pb2.TEMPLATE_ACCESS_STANDARD,
        "log_detail": tenant_pb2.LOG_DETAIL_STANDARD,
        "monitoring": tenant_pb2.MONITORING_LEVEL_FULL,
        "webhooks": True,
        "max_definition_bytes": 262144,
        "max_input_bytes": 262144,
        "max_output_bytes": 1048576,
        "max_subscriptions": 25,
    },
    "enterprise": {
        "tier": tenant_pb2.TIER_ENTERPRISE,
        "max_workflows": None,
        "max_steps_per_workflow": None,
        "max_concurrent_executions": 50,
        "max_executions_per_day": None,
        "history_retention_days": 365,
        "max_execution_seconds": 86400,
        "max_templates": None,
        "max_custom_templates": 100,
        "step_types": tenant_pb2.STEP_TYPE_ACCESS_ALL_AND_CUSTOM,
        "versioning": tenant_pb2.VERSIONING_LEVEL_FULL,
        "templates": tenant_pb2.TEMPLATE_ACCESS_ALL_AND_CUSTOM,
        "log_detail": tenant_pb2.LOG_DETAIL_EXTENDED,
        "monitoring": tenant_pb2.MONITORING_LEVEL_ADVANCED,
        "webhooks": True,
        "max_definition_bytes": 1048576,
        "max_input_bytes": 1048576,
        "max_output_bytes": 2097152,
        "max_subscriptions": 200,
    },
}
OPTIONAL = {
    "max_workflows",
    "max_steps_per_workflow",
    "max_concurrent_executions",
    "max_executions_per_day",
    "max_execution_seconds",
    "max_templates",
    "max_custom_templates",
}


async def get_tenant(channel: aio.Channel, tenant_id: str) -> tenant_pb2.Tenant:
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    response = await stub.GetTenant(tenant_pb2.GetTenantRequest(), metadata=auth(tenant_id))
    return response.tenant


def read_limit(limits: tenant_pb2.TierLimits, name: str) -> Any:
    if name in OPTIONAL and not limits.HasField(name):
        return None
    return getattr(limits, name)


@pytest.mark.parametrize("tier", sorted(EXPECTED))
@pytest.mark.parametrize("limit", sorted(set(EXPECTED["free"]) - {"tier"}))
async def test_get_tenant_reports_each_limit_of_the_tier_table(
    channel: aio.Channel, new_tenant: NewTenant, tier: str, limit: str
) -> None:
    tenant = await get_tenant(channel, await new_tenant(tier))
    assert tenant.tier == EXPECTED[tier]["tier"]
    assert read_limit(tenant.limits, limit) == EXPECTED[tier][limit]


async def test_enterprise_overrides_replace_configurable_limits(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant(
        "enterprise",
        {
            "max_concurrent_executions": 500,
            "max_execution_seconds": 7200,
            "max_workflows": 1000,
            "max_subscriptions": 2000,
        },
    )
    limits = (await get_tenant(channel, tenant_id)).limits
    assert limits.max_concurrent_executions == 500
    assert limits.max_execution_seconds == 7200
    assert limits.max_workflows == 1000
    assert limits.max_subscriptions == 2000
    assert not limits.HasField("max_executions_per_day")
