"""Authenticates every call and binds it to one tenant the token grants.

Health checking and reflection are exempt; every other method needs
`authorization: Bearer <jwt>` and `x-tenant-id`, and the role `tenancy.roles` asks for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

from grpc import aio

from foundation.errors import PermissionDenied, Unauthenticated
from foundation.hooks import HookInterceptor
from tenancy.context import CallIdentity, TenantId, bind_identity
from tenancy.roles import POLICY, Role, authorize
from tenancy.tokens import TokenVerifier

TENANT_HEADER: Final = "x-tenant-id"
EXEMPT_PREFIXES: Final = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)


class AuthInterceptor(HookInterceptor):
    def __init__(self, verifier: TokenVerifier, policy: Mapping[str, Role] = POLICY) -> None:
        self._verifier = verifier
        self._policy = policy

    def applies_to(self, method: str) -> bool:
        return not method.startswith(EXEMPT_PREFIXES)

    @asynccontextmanager
    async def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        metadata = dict(context.invocation_metadata() or ())
        principal = await self._verifier.verify(_bearer_token(metadata.get("authorization")))
        tenant = metadata.get(TENANT_HEADER)
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(
                "the x-tenant-id header is required", metadata={"header": TENANT_HEADER}
            )
        if tenant not in principal.tenants:
            raise PermissionDenied(
                f"the token does not grant tenant {tenant!r}", metadata={"tenant_id": tenant}
            )
        identity = CallIdentity(TenantId(tenant), principal.subject, principal.roles)
        authorize(identity, method, self._policy)
        with bind_identity(identity):
            yield


def _bearer_token(header: object) -> str:
    if not isinstance(header, str) or not header:
        raise Unauthenticated(
            "the authorization header is required", metadata={"header": "authorization"}
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization must be 'Bearer <token>'")
    return token.strip()
