"""Server behaviour a client sees: health, limits, and graceful shutdown."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from engine.dispatch import Publisher
from service.server import RunningServer, start_server
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, NewTenant, auth, server_settings
from wfe.v1 import tenant_pb2, tenant_pb2_grpc


async def test_health_reports_serving_for_the_api(channel: aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "wfe.v1.TenantService"):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_oversized_request_is_refused(channel: aio.Channel, new_tenant: NewTenant) -> None:
    tenant_id = await new_tenant()
    raw = channel.unary_unary("/wfe.v1.TenantService/GetTenant")
    with pytest.raises(aio.AioRpcError) as caught:
        await raw(b"\x00" * (5 * 1024 * 1024), metadata=auth(tenant_id))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_shutdown_reports_not_serving_then_drains(
    database: TenantDatabase, engine: Publisher, new_tenant: NewTenant
) -> None:
    settings = server_settings()
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    running: RunningServer = await start_server(settings, database, verifier, engine)
    tenant_id = await new_tenant()
    async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING

        stopping = asyncio.create_task(running.stop(grace=2.0))
        changed = await asyncio.wait_for(watch.read(), timeout=5)
        assert changed.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await asyncio.wait_for(stopping, timeout=10)

        stub = tenant_pb2_grpc.TenantServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetTenant(tenant_pb2.GetTenantRequest(), metadata=auth(tenant_id), timeout=2)
        assert caught.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
