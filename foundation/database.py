"""The database handle: one async engine and transactions scoped to a tenant."""

from __future__ import annotations

import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

SCOPE_KEY = "wfe.tenant_id"
"""Where a session keeps the tenant it is confined to (`Session.info`)."""

Scope = TypeVar("Scope", bound=str)


class Database(Generic[Scope]):
    """Owns the engine; every unit of work is `async with db.transaction(tenant) as session`.

    The transaction commits when the block ends and rolls back if it raises; services
    inside never commit on their own. The session class enforces the scope: the
    handle only records it in `info[SCOPE_KEY]` (`tenancy.TenantDatabase` is the one used).
    """

    def __init__(
        self,
        url: str,
        *,
        session_class: type[Session],
        pool_size: int = 10,
        max_overflow: int = 10,
    ) -> None:
        self.url = make_url(url)
        options: dict[str, Any] = {}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": 30}
        else:
            options.update(pool_size=pool_size, max_overflow=max_overflow, pool_recycle=3600)
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _drop_closed_connections(self.engine)
        self._sessions = async_sessionmaker(
            self.engine, sync_session_class=session_class, expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.url.get_backend_name() == "postgresql"

    @asynccontextmanager
    async def transaction(self, tenant: Scope | None) -> AsyncIterator[AsyncSession]:
        """A session in one transaction, confined to `tenant` (None: tenant-owned rows refuse)."""
        async with self._sessions() as session:
            session.info[SCOPE_KEY] = tenant
            async with session.begin():
                yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Take over transaction control so writers can BEGIN IMMEDIATE: SQLite then
        # queues concurrent writers on its busy timeout instead of failing them.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _drop_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection the server closed while it sat idle (a restart, an administrator,
    an idle timeout) is replaced at checkout, before a transaction meets it.

    Instead of a ping round trip at every checkout, the socket is polled: an idle
    connection has nothing to read unless the server has sent its goodbye or closed it.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        if _closed_by_server(dbapi_connection.driver_connection):
            raise exc.DisconnectionError("the database closed this idle connection")


def _closed_by_server(connection: Any) -> bool:
    if connection.closed:
        return True
    poller = select.poll()  # not select.select: a busy server's descriptors pass 1024
    try:
        poller.register(connection.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def upsert_insert(backend: str) -> Any:
    """The `insert` of `backend` ("postgresql" or "sqlite"): both add ON CONFLICT, which
    SQLAlchemy's generic `insert` lacks."""
    return postgresql.insert if backend == "postgresql" else sqlite.insert
