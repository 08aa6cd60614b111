"""Who is calling and for which tenant: token verification, tenant binding, query scoping."""

from tenancy.context import CallIdentity, TenantId, bind_identity, current_identity, current_tenant

__all__ = ["CallIdentity", "TenantId", "bind_identity", "current_identity", "current_tenant"]
