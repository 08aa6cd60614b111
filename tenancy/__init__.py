"""Who is calling and for which tenant: token verification, tenant binding, query scoping."""

from tenancy.context import (
    TENANT_ID_FORMAT,
    CallIdentity,
    TenantId,
    bind_identity,
    current_identity,
    current_tenant,
)
from tenancy.envelopes import decode_tenant

__all__ = [
    "TENANT_ID_FORMAT",
    "CallIdentity",
    "TenantId",
    "bind_identity",
    "current_identity",
    "current_tenant",
    "decode_tenant",
]
