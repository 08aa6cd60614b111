"""The database handle every process uses: sessions confined to one tenant each."""

from __future__ import annotations

from foundation.database import Database
from tenancy.context import TenantId
from tenancy.scoping import TenantScopedSession


class TenantDatabase(Database[TenantId]):
    """A `Database` whose transactions take a `TenantId` and whose sessions enforce it."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10) -> None:
        super().__init__(
            url,
            session_class=TenantScopedSession,
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
