"""Who may call what: one table from gRPC method to the role it needs, checked in one place.

A token's `tenants` claim says which tenants a caller belongs to; its `roles` claim says
what the caller may do there. The auth interceptor calls `authorize` on every call; a
method not in `POLICY` is open to any member of the tenant. A check that depends on the
request rather than the method (the admin-only subscription topics `all_workflows` and
`all_executions`, for a Subscribe RPC to come) calls `authorize_topics` from the handler,
once the request is decoded, with `current_identity()`: the rule stays here, by the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Final

from foundation.errors import PermissionDenied
from tenancy.context import CallIdentity


class Role(StrEnum):
    """What a caller may do within a tenant its token grants."""

    MEMBER = "member"
    """Anyone the token grants the tenant: the default, needing no `roles` entry."""
    ADMIN = "admin"
    """Operators of the tenant: irreversible and tenant-wide operations."""


_WORKFLOWS: Final = "/wfe.v1.WorkflowService/"

POLICY: Final[Mapping[str, Role]] = {
    # Deleting cannot be undone, and other members' executions lose their workflow.
    _WORKFLOWS + "DeleteWorkflow": Role.ADMIN,
    # A published version is a release other members and automations pin to.
    _WORKFLOWS + "PublishWorkflow": Role.ADMIN,
}
"""The role each gRPC full method name needs; a method not listed needs `DEFAULT`."""

DEFAULT: Final = Role.MEMBER

ADMIN_TOPICS: Final = frozenset({"all_workflows", "all_executions"})
"""Subscription topics that see every workflow or execution of the tenant."""


def required_role(method: str, policy: Mapping[str, Role] = POLICY) -> Role:
    """The role `method` (e.g. "/wfe.v1.WorkflowService/DeleteWorkflow") needs."""
    return policy.get(method, DEFAULT)


def has_role(identity: CallIdentity, role: Role) -> bool:
    return role is Role.MEMBER or role in identity.roles


def authorize(identity: CallIdentity, method: str, policy: Mapping[str, Role] = POLICY) -> None:
    """Raise PermissionDenied unless `identity` holds the role `method` needs."""
    role = required_role(method, policy)
    if not has_role(identity, role):
        named = method.lstrip("/")  # as grpcurl names it: service/method, not a path
        raise PermissionDenied(
            f"{named} needs the {role} role",
            metadata={"method": named, "role": role, "tenant_id": identity.tenant_id},
        )


def authorize_topics(identity: CallIdentity, topics: Iterable[str]) -> None:
    """Raise PermissionDenied if a non-admin asks for a tenant-wide subscription topic."""
    denied = sorted(set(topics) & ADMIN_TOPICS)
    if denied and not has_role(identity, Role.ADMIN):
        raise PermissionDenied(
            f"the topic {denied[0]!r} needs the {Role.ADMIN} role",
            metadata={"topic": denied[0], "role": Role.ADMIN, "tenant_id": identity.tenant_id},
        )
