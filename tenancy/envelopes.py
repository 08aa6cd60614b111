"""Tenant ids that arrive outside an authenticated call: task messages and periodic jobs.

A step task carries its tenant id as a plain string; so does the registry's list of
tenants that the retention purge visits. Both were written by the service itself,
but a message can be forged or corrupted on the broker, so the id is checked for
shape before it scopes any transaction.
"""

from __future__ import annotations

from foundation.errors import InvalidInput
from tenancy.context import TENANT_ID_FORMAT, TenantId


def decode_tenant(value: object) -> TenantId:
    """The tenant id an envelope names; InvalidInput when it is not one."""
    if not isinstance(value, str) or not TENANT_ID_FORMAT.fullmatch(value):
        raise InvalidInput(f"not a tenant id: {value!r:.80}", metadata={"field": "tenant_id"})
    return TenantId(value)
