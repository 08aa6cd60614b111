"""One read-only transaction that a process's short reads share, on PostgreSQL.

A worker reads what a step needs before it runs it unclaimed (`engine.engine`): a read
per step. In a transaction of its own, that read would end in a commit (one more per
step) or a rollback, after which psycopg drops the connection's prepared statements and
sends DEALLOCATE ALL, itself a transaction, before the next statement. So the reads of
a process share one READ COMMITTED transaction on one connection, as the event feed's
do: each statement still sees every commit before it, and none holds a snapshot past
its end. Each read first sets the tenant for row-level security (`app.tenant_id`,
transaction-local, so set again at every read), and names the tenant in its own WHERE
as well. The connection prepares nothing, so the rollback that ends the transaction
(once it is `TRANSACTION_SECONDS` old, or that long after the last read) costs no
commit and drops nothing; then the connection goes back to the pool.

On SQLite, where commits cost nothing of the kind, each read is a short transaction of
the tenant's session, behind the application wall as ever; callers need not tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from foundation.database import Database
from tenancy import TenantId
from tenancy.scoping import BIND_DATABASE_TENANT

logger = logging.getLogger(__name__)

TRANSACTION_SECONDS: Final = 0.5


class SharedReads:
    """Reads of one process through one connection and transaction, one at a time."""

    def __init__(self, database: Database[Any]) -> None:
        self._database = database
        self._lock = asyncio.Lock()
        self._connection: AsyncConnection | None = None
        self._threshold: Any = None
        self._began = 0.0
        self._closer: asyncio.Task[None] | None = None

    async def read(
        self, tenant: TenantId, statement: Executable, parameters: dict[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        """The rows of `statement` as the tenant may see them, committed before it began."""
        if not self._database.is_postgresql:
            async with self._database.transaction(tenant) as session:
                return (await session.execute(statement, parameters or {})).all()
        async with self._lock:
            connection = await self._connect()
            try:
                if not connection.in_transaction():
                    self._began = time.monotonic()
                await connection.execute(BIND_DATABASE_TENANT, {"tenant": tenant})
                rows = (await connection.execute(statement, parameters or {})).all()
                if time.monotonic() - self._began >= TRANSACTION_SECONDS:
                    await connection.rollback()
            except BaseException:
                await self._release()
                raise
        if self._closer is None or self._closer.done():
            self._closer = asyncio.get_running_loop().create_task(self._close_when_quiet())
        return rows

    async def close(self) -> None:
        closer, self._closer = self._closer, None
        if closer is not None and not closer.done():
            closer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await closer
        async with self._lock:
            await self._release()

    async def _connect(self) -> AsyncConnection:
        if self._connection is None:
            connection = await self._database.engine.connect()
            driver = (await connection.get_raw_connection()).driver_connection
            self._threshold = getattr(driver, "prepare_threshold", None)
            if driver is not None:
                driver.prepare_threshold = None  # nothing to drop at the rollback
            self._connection = connection
        return self._connection

    async def _release(self) -> None:
        """End the transaction and give the connection back to the pool as it came."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if not connection.closed:
                await connection.rollback()
                driver = (await connection.get_raw_connection()).driver_connection
                if driver is not None:
                    driver.prepare_threshold = self._threshold
        finally:
            await connection.close()

    async def _close_when_quiet(self) -> None:
        """Once no read came for `TRANSACTION_SECONDS`, end the transaction and let go."""
        while True:
            await asyncio.sleep(TRANSACTION_SECONDS)
            async with self._lock:
                if self._connection is None:
                    return
                if time.monotonic() - self._began >= TRANSACTION_SECONDS:
                    try:
                        await self._release()
                    except Exception:  # the connection is closed either way
                        logger.warning("could not end the shared read transaction", exc_info=True)
                    return
