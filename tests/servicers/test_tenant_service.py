"""TenantService.GetTenant over a real channel, on every backend."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, auth, error_info, token
from tiers import Quota, consume, plan_for
from wfe.v1 import tenant_pb2, tenant_pb2_grpc


def stub(channel: aio.Channel) -> tenant_pb2_grpc.TenantServiceStub:
    return tenant_pb2_grpc.TenantServiceStub(channel)


async def test_other_tenant_is_refused_without_its_data(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_a, tenant_b = await new_tenant("enterprise"), await new_tenant("free")
    with pytest.raises(grpc.RpcError) as caught:
        await stub(channel).GetTenant(
            tenant_pb2.GetTenantRequest(),
            metadata=(("authorization", f"Bearer {token([tenant_b])}"), ("x-tenant-id", tenant_a)),
        )
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert "enterprise" not in caught.value.details()


async def test_get_tenant_returns_the_callers_tenant(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant("professional")
    response = await stub(channel).GetTenant(
        tenant_pb2.GetTenantRequest(), metadata=auth(tenant_id)
    )
    assert response.tenant.id == tenant_id
    assert response.tenant.tier == tenant_pb2.TIER_PROFESSIONAL
    assert response.tenant.create_time.seconds > 0


async def test_get_tenant_reports_current_usage(
    channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant("free")
    plan = plan_for(tenant_id, "free")
    async with database.transaction(TenantId(tenant_id)) as session:
        await consume(session, plan, Quota.WORKFLOWS, 3)
        await consume(session, plan, Quota.EXECUTIONS_PER_DAY, 7)
        await consume(session, plan, Quota.CONCURRENT_EXECUTIONS)
    usage = (
        await stub(channel).GetTenant(tenant_pb2.GetTenantRequest(), metadata=auth(tenant_id))
    ).tenant.usage
    assert (usage.workflows, usage.executions_today, usage.concurrent_executions) == (3, 7, 1)
    assert usage.executions_reset_time.seconds % 86400 == 0
