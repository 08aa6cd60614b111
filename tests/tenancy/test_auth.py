"""Authentication as a client sees it: every bad credential is refused with the right status."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.conftest import AUDIENCE, ISSUER, SECRET, NewTenant, auth, error_info, token
from wfe.v1 import tenant_pb2, tenant_pb2_grpc

UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
PERMISSION_DENIED = (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
DROP = object()
"""A claim override meaning: leave this claim out."""


def claims(tenant_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "iat": now,
        "exp": now + 600,
        "tenants": [tenant_id],
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not DROP}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(payload: dict[str, Any], secret: str = SECRET, alg: str = "HS256") -> str:
    """An HMAC-signed JWT, built by hand so that claims PyJWT would refuse to encode fit."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64url(json.dumps(payload).encode())}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


async def get_tenant(
    channel: aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> tenant_pb2.GetTenantResponse:
    stub = tenant_pb2_grpc.TenantServiceStub(channel)
    return await stub.GetTenant(tenant_pb2.GetTenantRequest(), metadata=metadata)


async def refusal(
    channel: aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> tuple[tuple[grpc.StatusCode, str], dict[str, str], aio.AioRpcError]:
    """The (code, reason), ErrorInfo metadata and error of a call that must fail."""
    with pytest.raises(aio.AioRpcError) as caught:
        await get_tenant(channel, metadata)
    code, reason, info = error_info(caught.value)
    return (code, reason), info, caught.value


def bearer(tenant_id: str, jwt_text: str) -> tuple[tuple[str, str], ...]:
    return auth(tenant_id, bearer=jwt_text)


async def test_valid_token_is_accepted(channel: aio.Channel, new_tenant: NewTenant) -> None:
    tenant_id = await new_tenant()
    response = await get_tenant(channel, bearer(tenant_id, signed(claims(tenant_id))))
    assert response.tenant.id == tenant_id


async def test_call_without_authorization_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant()
    status, info, _ = await refusal(channel, (("x-tenant-id", tenant_id),))
    assert status == UNAUTHENTICATED
    assert info == {"header": "authorization"}


@pytest.mark.parametrize(
    "header",
    ["abc", "Bearer", "Bearer ", "Bearer abc", "Bearer a.b.c", "Basic dXNlcjpwYXNzd29yZA=="],
)
async def test_malformed_authorization_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant, header: str
) -> None:
    tenant_id = await new_tenant()
    status, _, _ = await refusal(channel, (("authorization", header), ("x-tenant-id", tenant_id)))
    assert status == UNAUTHENTICATED


async def test_valid_token_under_another_scheme_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant()
    metadata = (("authorization", f"Token {token([tenant_id])}"), ("x-tenant-id", tenant_id))
    status, _, _ = await refusal(channel, metadata)
    assert status == UNAUTHENTICATED


async def test_token_expired_beyond_leeway_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant()
    now = int(time.time())
    expired = signed(claims(tenant_id, iat=now - 3600, exp=now - 60))
    status, _, error = await refusal(channel, bearer(tenant_id, expired))
    assert status == UNAUTHENTICATED
    assert "expired" in (error.details() or "")


async def test_token_expired_within_leeway_is_accepted(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """Clocks drift: 30 s of leeway keeps a just-expired token working."""
    tenant_id = await new_tenant()
    now = int(time.time())
    response = await get_tenant(
        channel, bearer(tenant_id, signed(claims(tenant_id, iat=now - 3600, exp=now - 10)))
    )
    assert response.tenant.id == tenant_id


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_token_not_valid_yet_beyond_leeway_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant, claim: str
) -> None:
    tenant_id = await new_tenant()
    future = signed(claims(tenant_id, **{claim: int(time.time()) + 120}))
    status, _, _ = await refusal(channel, bearer(tenant_id, future))
    assert status == UNAUTHENTICATED


async def test_token_signed_with_another_secret_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant()
    forged = signed(claims(tenant_id), secret="another-secret-" + "y" * 40)
    status, _, _ = await refusal(channel, bearer(tenant_id, forged))
    assert status == UNAUTHENTICATED


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_unsigned_alg_none_token_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant, alg: str
) -> None:
    tenant_id = await new_tenant()
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(tenant_id)).encode())
    status, _, _ = await refusal(channel, bearer(tenant_id, f"{header}.{payload}."))
    assert status == UNAUTHENTICATED


async def test_token_with_another_hmac_algorithm_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """Only HS256 is configured: HS384/HS512 with the right secret are still refused."""
    tenant_id = await new_tenant()
    for alg in ("HS384", "HS512"):
        other = signed(claims(tenant_id), alg=alg)
        status, _, _ = await refusal(channel, bearer(tenant_id, other))
        assert status == UNAUTHENTICATED


@pytest.mark.parametrize("audience", ["other", "wfe-admin", "", ["other", "api"]])
async def test_token_for_another_audience_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant, audience: str | list[str]
) -> None:
    tenant_id = await new_tenant()
    jwt_text = signed(claims(tenant_id, aud=audience))
    status, _, _ = await refusal(channel, bearer(tenant_id, jwt_text))
    assert status == UNAUTHENTICATED


async def test_audience_list_containing_the_service_is_accepted(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant()
    jwt_text = signed(claims(tenant_id, aud=["other", AUDIENCE]))
    assert (await get_tenant(channel, bearer(tenant_id, jwt_text))).tenant.id == tenant_id


@pytest.mark.parametrize(
    "issuer",
    [ISSUER + "-evil", "x" + ISSUER, ISSUER[:-1], ISSUER.upper(), "wfe", "", [ISSUER]],
    ids=["suffixed", "prefixed", "truncated", "upper", "substring", "empty", "list"],
)
async def test_token_from_an_untrusted_issuer_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant, issuer: str | list[str]
) -> None:
    tenant_id = await new_tenant()
    jwt_text = signed(claims(tenant_id, iss=issuer))
    status, _, _ = await refusal(channel, bearer(tenant_id, jwt_text))
    assert status == UNAUTHENTICATED


@pytest.mark.parametrize("claim", ["exp", "sub", "iat", "iss", "aud"])
async def test_token_missing_a_required_claim_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant, claim: str
) -> None:
    tenant_id = await new_tenant()
    jwt_text = signed(claims(tenant_id, **{claim: DROP}))
    status, _, error = await refusal(channel, bearer(tenant_id, jwt_text))
    assert status == UNAUTHENTICATED
    assert claim in (error.details() or "")


@pytest.mark.parametrize(
    "tenants",
    ["TENANT", {"TENANT": True}, [1, 2], ["TENANT", None], [["TENANT"]], 7],
    ids=["string", "object", "numbers", "with-null", "nested", "number"],
)
async def test_tenants_claim_that_is_not_a_list_of_strings_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant, tenants: Any
) -> None:
    tenant_id = await new_tenant()
    shaped = json.loads(json.dumps(tenants).replace("TENANT", tenant_id))
    jwt_text = signed(claims(tenant_id, tenants=shaped))
    status, _, _ = await refusal(channel, bearer(tenant_id, jwt_text))
    assert status == UNAUTHENTICATED


async def test_tenant_not_granted_by_the_token_is_permission_denied(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    granted, other = await new_tenant(), await new_tenant()
    metadata = (("authorization", f"Bearer {token([granted])}"), ("x-tenant-id", other))
    status, info, _ = await refusal(channel, metadata)
    assert status == PERMISSION_DENIED
    assert info == {"tenant_id": other}


async def test_token_without_tenants_claim_is_permission_denied(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_id = await new_tenant()
    jwt_text = signed(claims(tenant_id, tenants=DROP))
    status, _, _ = await refusal(channel, bearer(tenant_id, jwt_text))
    assert status == PERMISSION_DENIED


@pytest.mark.parametrize("tenant_header", [None, ""])
async def test_missing_tenant_header_is_unauthenticated(
    channel: aio.Channel, new_tenant: NewTenant, tenant_header: str | None
) -> None:
    tenant_id = await new_tenant()
    metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token([tenant_id])}"),)
    if tenant_header is not None:
        metadata += (("x-tenant-id", tenant_header),)
    status, info, _ = await refusal(channel, metadata)
    assert status == UNAUTHENTICATED
    assert info == {"header": "x-tenant-id"}


async def test_token_granting_several_tenants_works_for_each(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant_ids = [await new_tenant("free"), await new_tenant("enterprise"), await new_tenant()]
    jwt_text = token(tenant_ids)
    for tenant_id in tenant_ids:
        response = await get_tenant(channel, bearer(tenant_id, jwt_text))
        assert response.tenant.id == tenant_id


async def test_refusals_never_echo_the_token(channel: aio.Channel, new_tenant: NewTenant) -> None:
    tenant_id, other = await new_tenant(), await new_tenant()
    now = int(time.time())
    valid = token([tenant_id])  # sent for another tenant: PERMISSION_DENIED
    headers = [
        (valid, f"Bearer {valid}"),
        (valid, f"Token {valid}"),
        ("c2VjcmV0LXBhc3N3b3Jk", "Basic c2VjcmV0LXBhc3N3b3Jk"),
        ("not-a-jwt-but-a-secret", "Bearer not-a-jwt-but-a-secret"),
    ]
    for forged in (
        signed(claims(tenant_id, iat=now - 3600, exp=now - 60)),
        signed(claims(tenant_id, iss=ISSUER + "-evil")),
        signed(claims(tenant_id, sub=DROP)),
        signed(claims(tenant_id, tenants="x")),
        signed(claims(tenant_id), secret="another-secret-" + "y" * 40),
    ):
        headers.append((forged, f"Bearer {forged}"))
    for secret, header in headers:
        _, info, error = await refusal(channel, (("authorization", header), ("x-tenant-id", other)))
        seen = [error.details() or "", *info.values()]
        seen += [str(v) for _, v in (error.trailing_metadata() or ())]
        for part in filter(None, (secret, *secret.split("."))):
            assert not any(part in text for text in seen), f"the error repeats {header!r}"


async def test_health_check_needs_no_credentials(channel: aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for metadata in ((), (("authorization", "Bearer garbage"),)):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), metadata=metadata)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_needs_no_credentials(channel: aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    await call.done_writing()
    response = await call.read()
    names = {service.name for service in response.list_services_response.service}
    assert "wfe.v1.TenantService" in names
    assert "grpc.health.v1.Health" in names
