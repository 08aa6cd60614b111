"""Health follows readiness: SERVING only while the database answers and its schema is at
the latest migration, so a load balancer or Kubernetes sends nothing to a server that
would fail every call (a database down, or a deployment that ran before `wfe migrate`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2
from sqlalchemy.exc import SQLAlchemyError

from persistence import revision
from tenancy.database import TenantDatabase

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    def __init__(
        self,
        database: TenantDatabase,
        servicer: health.aio.HealthServicer,
        names: Sequence[str],
        interval: float,
    ) -> None:
        self._database = database
        self._servicer = servicer
        self._names = names
        self._interval = interval
        self._reason: str | None = "not checked yet"
        self._task: asyncio.Task[None] | None = None
        self._asking: asyncio.Task[str | None] | None = None

    @property
    def reason(self) -> str | None:
        """Why the server is not ready; None when it is."""
        return self._reason

    async def check(self) -> str | None:
        """Why the server would not be ready now, or None.

        A database slower than the interval counts as not answering, but its read is left
        to end on its own: cancelled mid-statement, a driver may keep its connection (and
        on SQLite its lock) out of the pool.
        """
        if self._asking is None or self._asking.done():
            self._asking = asyncio.get_running_loop().create_task(self._ask())
        done, _ = await asyncio.wait({self._asking}, timeout=max(self._interval, 1.0))
        if not done:
            return "the database does not answer in time"
        return self._asking.result()

    async def _ask(self) -> str | None:
        try:
            async with self._database.transaction(None) as session:
                found = await revision.current(session)
        except (SQLAlchemyError, OSError) as error:
            return f"the database does not answer ({type(error).__name__})"
        wanted = await asyncio.to_thread(revision.head)  # loads the scripts once
        if found != wanted:
            return (
                f"the schema is at {', '.join(sorted(found)) or 'nothing'}; the migrations "
                f"lead to {', '.join(sorted(wanted))}: run `wfe migrate`"
            )
        return None

    async def update(self) -> None:
        """Check, and report the outcome as every service's health status."""
        reason = await self.check()
        if reason != self._reason:
            if reason is None:
                logger.info("ready: the database answers and its schema is current")
            else:
                logger.warning("not ready: %s", reason)
        self._reason = reason
        for name in self._names:
            await self._servicer.set(name, SERVING if reason is None else NOT_SERVING)

    def start(self) -> None:
        """Check again every interval, from now on."""
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="wfe-readiness")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._asking is not None:
            await asyncio.wait({self._asking}, timeout=5.0)  # a read in flight ends on its own

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.update()
            except Exception:  # the watch goes on; the last status stands meanwhile
                logger.exception("could not check readiness")
