"""Cross-tenant isolation for every RPC of the `wfe.v1` API.

Each RPC has a case: tenant A owns something, tenant B's token asks for it. The
coverage test fails when an RPC is added without a case here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc import aio

from service.server import SERVICE_NAMES
from tests.conftest import NewTenant, auth, error_info, token
from wfe.v1 import tenant_pb2, tenant_pb2_grpc

Case = Callable[[aio.Channel, str, str], Awaitable[None]]


async def get_tenant_case(channel: aio.Channel, tenant_a: str, tenant_b: str) -> None:
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    own = await stub.GetTenant(tenant_pb2.GetTenantRequest(), metadata=auth(tenant_b))
    assert own.tenant.id == tenant_b
    # The tenant is chosen by the header, so B's only way at A is to name it there.
    with pytest.raises(grpc.RpcError) as caught:
        await stub.GetTenant(
            tenant_pb2.GetTenantRequest(),
            metadata=(("authorization", f"Bearer {token([tenant_b])}"), ("x-tenant-id", tenant_a)),
        )
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert metadata == {"tenant_id": tenant_a}


CASES: dict[str, Case] = {
    "/wfe.v1.TenantService/GetTenant": get_tenant_case,
}


def api_methods() -> set[str]:
    """Every method of every API service the server registers."""
    pool = descriptor_pool.Default()
    return {
        f"/{name}/{method.name}"
        for name in SERVICE_NAMES
        for method in pool.FindServiceByName(name).methods
    }


def test_every_rpc_has_an_isolation_case() -> None:
    assert api_methods() == set(CASES)


@pytest.mark.parametrize("method", sorted(CASES))
async def test_other_tenants_token_never_reaches_the_resource(
    channel: aio.Channel, new_tenant: NewTenant, method: str
) -> None:
    await CASES[method](channel, await new_tenant("enterprise"), await new_tenant("free"))
