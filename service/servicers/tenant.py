"""`wfe.v1.TenantService`."""

from __future__ import annotations

from typing import Any

from grpc import aio

from service.servicers.messages import TIERS, timestamp
from service.tenants import service as tenants
from tenancy import current_tenant
from tenancy.database import TenantDatabase
from tiers import Allowance, Quota, TenantPlan
from wfe.v1 import tenant_pb2, tenant_pb2_grpc


class TenantServicer(tenant_pb2_grpc.TenantServiceServicer):
    def __init__(self, database: TenantDatabase) -> None:
        self._database = database

    async def GetTenant(
        self, request: tenant_pb2.GetTenantRequest, context: aio.ServicerContext[Any, Any]
    ) -> tenant_pb2.GetTenantResponse:
        tenant, plan, used = await tenants.overview(self._database, current_tenant())
        return tenant_pb2.GetTenantResponse(
            tenant=tenant_pb2.Tenant(
                id=tenant.id,
                name=tenant.name,
                tier=TIERS[plan.tier],
                limits=limits_message(plan),
                usage=usage_message(used),
                create_time=timestamp(tenant.created_at),
            )
        )


def limits_message(plan: TenantPlan) -> tenant_pb2.TierLimits:
    limits = plan.limits
    numeric = {
        name: getattr(limits, name)
        for name in (
            "max_workflows",
            "max_steps_per_workflow",
            "max_concurrent_executions",
            "max_executions_per_day",
            "max_execution_seconds",
            "max_templates",
            "max_custom_templates",
        )
        if getattr(limits, name) is not None
    }
    return tenant_pb2.TierLimits(
        **numeric,
        history_retention_days=limits.history_retention_days,
        step_types=limits.step_types.value,
        versioning=limits.versioning.value,
        templates=limits.templates.value,
        log_detail=limits.log_detail.value,
        monitoring=limits.monitoring.value,
        webhooks=limits.webhooks,
        max_definition_bytes=limits.max_definition_bytes,
        max_input_bytes=limits.max_input_bytes,
        max_output_bytes=limits.max_output_bytes,
        max_subscriptions=limits.max_subscriptions,
        max_loop_iterations=limits.max_loop_iterations,
    )


def usage_message(used: dict[Quota, Allowance]) -> tenant_pb2.TenantUsage:
    daily = used[Quota.EXECUTIONS_PER_DAY]
    message = tenant_pb2.TenantUsage(
        workflows=used[Quota.WORKFLOWS].used,
        concurrent_executions=used[Quota.CONCURRENT_EXECUTIONS].used,
        executions_today=daily.used,
        custom_templates=used[Quota.CUSTOM_TEMPLATES].used,
    )
    if daily.resets_at is not None:
        message.executions_reset_time.CopyFrom(timestamp(daily.resets_at))
    return message
