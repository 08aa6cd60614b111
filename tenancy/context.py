"""The identity bound to the current call, readable anywhere below the interceptor."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final, NewType

from foundation.errors import Unauthenticated

TenantId = NewType("TenantId", str)
"""A tenant id that an authenticated call was granted; only `tenancy` produces one."""

TENANT_ID_FORMAT: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
"""What a tenant id looks like: 1-63 lowercase letters, digits or inner dashes."""


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """The verified caller: the bound tenant, the token's subject and its roles."""

    tenant_id: TenantId
    subject: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


_identity: ContextVar[CallIdentity | None] = ContextVar("wfe_identity", default=None)


@contextmanager
def bind_identity(identity: CallIdentity) -> Iterator[CallIdentity]:
    """Make `identity` current for the code run inside the block."""
    token = _identity.set(identity)
    try:
        yield identity
    finally:
        _identity.reset(token)


def current_identity() -> CallIdentity:
    """The identity of the current call; raises if the call was never authenticated."""
    identity = _identity.get()
    if identity is None:
        raise Unauthenticated("no authenticated identity is bound to this call")
    return identity


def current_tenant() -> TenantId:
    """The tenant the current call is confined to."""
    return current_identity().tenant_id


def bound_tenant() -> str | None:
    """The tenant of the call being served, or None outside an authenticated call."""
    identity = _identity.get()
    return None if identity is None else identity.tenant_id
