"""Each process keeps a tenant's plan for a second instead of reading its row in every
transaction: a tier change reaches every process within that second, and at once in the
process that made it (once its transaction commits)."""

from __future__ import annotations

import time
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from tenancy import TenantId
from tiers.policy import TenantPlan

FRESH_SECONDS: Final = 1.0
"""How long a process trusts a plan it read; what a tier change waits at most elsewhere."""

CAPACITY: Final = 4096
"""Entries kept before the stale ones are dropped (one per active tenant and database)."""

_Key = tuple[Any, TenantId]
_plans: dict[_Key, tuple[float, TenantPlan]] = {}


def _key(session: AsyncSession, tenant_id: TenantId) -> _Key:
    # A plan belongs to one database, whichever role reads or changes it: a process may
    # use several (tests, tools), or one through two roles (the owner's and the service's).
    url = session.get_bind().engine.url
    return ((url.get_backend_name(), url.host, url.port, url.database), tenant_id)


def cached(session: AsyncSession, tenant_id: TenantId) -> TenantPlan | None:
    entry = _plans.get(_key(session, tenant_id))
    if entry is None or entry[0] <= time.monotonic():
        return None
    return entry[1]


def keep(session: AsyncSession, plan: TenantPlan) -> None:
    now = time.monotonic()
    if len(_plans) >= CAPACITY:
        for key in [key for key, (until, _) in _plans.items() if until <= now]:
            del _plans[key]
        if len(_plans) >= CAPACITY:
            _plans.clear()
    _plans[_key(session, plan.tenant_id)] = (now + FRESH_SECONDS, plan)


def forget(session: AsyncSession, tenant_id: TenantId) -> None:
    """The tenant's plan changes in this transaction: drop it now and again at commit (a
    read between the two would otherwise keep the old plan)."""
    key = _key(session, tenant_id)
    _plans.pop(key, None)

    def _after_commit(_: Any) -> None:
        _plans.pop(key, None)

    event.listen(session.sync_session, "after_commit", _after_commit, once=True)
