"""The event log as one feed across tenants, read in id order up to where it is final.

Live streams need every event exactly once and in id order, and a resumed stream needs
the log to agree with what was streamed live. So a reader must never pass an id that a
transaction still in flight holds: it would miss that event for good. `horizon()` says
how far the log is final (every id up to it is committed and visible, or will never
appear); `read()` returns the events of a range below it.

PostgreSQL draws ids from a sequence when a row is inserted, not when it commits, so the
horizon is worked out from `wfe_event_horizon()` (migration 0006): the last id handed out
and the transactions then writing to the log. That id becomes final once all of those
transactions have ended, which a later call shows: `Horizon` keeps the candidates until
then. Inserts pay nothing for it: no lock, trigger or notification per transaction. The
price is on the reading side: a transaction that writes to the log (the retention purge's
deletes too) holds live delivery back until it ends, as it should, and only those do.

SQLite serialises writers (each write transaction holds the database's write lock from
its first statement to its commit), so ids commit in order and the highest visible id is
the horizon.

The feed reads every tenant's events, for the server's dispatcher only: on PostgreSQL
through `wfe_event_feed()` (migration 0006 says why that is the one cross-tenant read of
the log), on SQLite through a connection outside any tenant session. Each event carries
its tenant, and the dispatcher hands it to that tenant's subscribers alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from sqlalchemy import Executable, Row, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.topics import NOTIFICATION
from foundation.database import Database
from persistence.models import Event
from tenancy import TenantId, decode_tenant

logger = logging.getLogger(__name__)

MAX_CANDIDATES: Final = 32
"""Candidates kept while a writer stays in flight; beyond it the newest two are merged."""


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One committed event of the log, as streams see it."""

    id: int
    tenant_id: TenantId
    type: str
    workflow_id: str | None
    execution_id: str | None
    payload: Mapping[str, Any]
    created_at: datetime

    @property
    def recipient(self) -> str | None:
        """The user a notification is for; None for every other event."""
        if self.type != NOTIFICATION:
            return None
        user = self.payload.get("user_id")
        return user if isinstance(user, str) else ""

    @classmethod
    def of(cls, row: Any) -> FeedEvent:
        return cls(
            id=int(row.id),
            tenant_id=decode_tenant(row.tenant_id),
            type=row.type,
            workflow_id=row.workflow_id,
            execution_id=row.execution_id,
            payload=row.payload,
            created_at=row.created_at.astimezone(UTC),
        )


class EventFeed(Protocol):
    """The log across tenants: how far it is final, and the events of a final range."""

    async def horizon(self) -> int:
        """An id up to which the log is final; it never decreases."""
        ...

    @property
    def settling(self) -> bool:
        """Whether ids are waiting for writers in flight (ask `horizon` again soon)."""
        ...

    async def close(self) -> None:
        """Give back the connection it holds."""
        ...

    async def rest(self) -> None:
        """The reader is about to wait for a while: end anything it holds open."""
        ...

    async def read(
        self, after_id: int, upto_id: int, tenants: Collection[str] | None, limit: int
    ) -> list[FeedEvent]:
        """Events with `after_id` < id <= `upto_id`, of `tenants` (None: all), oldest first."""
        ...


class Horizon:
    """Candidate horizons (last id, writers then) that become final when those writers end.

    Writers are named by virtual transaction id, which no other transaction reuses while
    a candidate could name it. A writer missing from a later list has ended, and its
    commit was visible before its lock went. Merging two candidates into the newer id
    and both writer sets is safe: it becomes final no earlier than either would.
    """

    def __init__(self) -> None:
        self.final = 0
        self._pending: list[tuple[int, frozenset[str]]] = []

    @property
    def settling(self) -> bool:
        return bool(self._pending)

    def observe(self, last_id: int, writers: frozenset[str]) -> int:
        """Take a new reading (`last_id` read before `writers`); the final id after it."""
        waiting = []
        for value, held in self._pending:
            if held & writers:
                waiting.append((value, held))
            else:
                self.final = max(self.final, value)
        if not writers:
            self.final = max(self.final, last_id)
        elif last_id > self.final and not (waiting and waiting[-1] == (last_id, writers)):
            waiting.append((last_id, writers))
        waiting = [(value, held) for value, held in waiting if value > self.final]
        if len(waiting) > MAX_CANDIDATES:
            (older, first), (newer, second) = waiting[-2:]
            waiting[-2:] = [(max(older, newer), first | second)]
        self._pending = waiting
        return self.final


class PostgresFeed:
    """The feed on PostgreSQL: `wfe_event_horizon()` and `wfe_event_feed()`.

    It keeps one connection of the pool between calls, so a dispatcher round costs two
    round trips and no pool checkout. Its calls share one READ COMMITTED transaction
    (each statement still sees every commit before it) that ends when it is
    `TRANSACTION_SECONDS` old or the reader rests: a busy server reads the log a hundred
    times a second, and a commit for each read would be a round trip and a transaction
    apiece. It ends in a commit, not a rollback: psycopg drops its prepared statements
    at every ROLLBACK (and sends DEALLOCATE ALL, a transaction of its own, before the
    next statement), so a rollback costs more than the commit. The transaction is
    read-only and holds no snapshot between statements, so it holds back neither vacuum
    nor the horizon; its lock on `events` only makes DDL on the table wait for it, at
    most that long.
    """

    TRANSACTION_SECONDS: Final = 0.5

    HORIZON: Final = text("SELECT last_id, writers FROM wfe_event_horizon()")
    FEED: Final = text(
        "SELECT * FROM wfe_event_feed(CAST(:after AS bigint), CAST(:upto AS bigint), "
        "CAST(:tenants AS text[]), CAST(:limit AS integer))"
    )

    def __init__(self, database: Database[Any]) -> None:
        self._database = database
        self._horizon = Horizon()
        self._connection: AsyncConnection | None = None
        self._began = 0.0

    @property
    def settling(self) -> bool:
        return self._horizon.settling

    async def horizon(self) -> int:
        [row] = await self._run(self.HORIZON)
        return self._horizon.observe(int(row.last_id), frozenset(row.writers))

    async def read(
        self, after_id: int, upto_id: int, tenants: Collection[str] | None, limit: int
    ) -> list[FeedEvent]:
        chosen = None if tenants is None else sorted(tenants)
        rows = await self._run(
            self.FEED, {"after": after_id, "upto": upto_id, "tenants": chosen, "limit": limit}
        )
        return [FeedEvent.of(row) for row in rows]

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def rest(self) -> None:
        connection = self._connection
        if connection is None or not connection.in_transaction():
            return
        try:
            await connection.commit()
        except BaseException:
            await self.close()
            raise

    async def _run(
        self, statement: Executable, parameters: dict[str, Any] | None = None
    ) -> Sequence[Row[Any]]:
        if self._connection is None:
            self._connection = await self._database.engine.connect()
        try:
            if not self._connection.in_transaction():
                self._began = time.monotonic()
            rows = (await self._connection.execute(statement, parameters or {})).all()
            if time.monotonic() - self._began >= self.TRANSACTION_SECONDS:
                await self._connection.commit()
        except BaseException:
            await self.close()  # a broken or interrupted connection is not used again
            raise
        return rows


class SqliteFeed:
    """The feed on SQLite, where ids commit in order: the highest id is final."""

    def __init__(self, database: Database[Any]) -> None:
        self._database = database
        self._final = 0

    @property
    def settling(self) -> bool:
        return False

    async def close(self) -> None:
        pass

    async def rest(self) -> None:
        pass

    async def horizon(self) -> int:
        async with self._database.engine.connect() as connection:
            highest = await connection.scalar(select(func.max(Event.id)))
            await connection.commit()
        self._final = max(self._final, int(highest or 0))
        return self._final

    async def read(
        self, after_id: int, upto_id: int, tenants: Collection[str] | None, limit: int
    ) -> list[FeedEvent]:
        table = Event.__table__
        statement = (
            select(table)
            .where(table.c.id > after_id, table.c.id <= upto_id)
            .order_by(table.c.id)
            .limit(limit)
        )
        if tenants is not None:
            statement = statement.where(table.c.tenant_id.in_(sorted(tenants)))
        async with self._database.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
            await connection.commit()
        return [FeedEvent.of(row) for row in rows]


REST_AFTER: Final = 0.1
"""A reader quiet this long lets its feed end the read transaction while it waits on."""


async def wait_for_wake(wake: asyncio.Event, patience: float, feed: EventFeed) -> None:
    """Wait until `wake` is set or `patience` seconds pass; past `REST_AFTER` of quiet, let `feed`
    end its read transaction meanwhile.

    A busy reader is woken every few milliseconds and keeps its transaction (which ends
    on its own after `TRANSACTION_SECONDS`); an idle one gives it up soon. A failure to
    end it is only logged: the feed has let its connection go, and its next call takes
    a new one.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(min(patience, REST_AFTER)):
            await wake.wait()
            return
    if patience <= REST_AFTER:
        return
    try:
        await feed.rest()
    except Exception:
        logger.warning("could not end the event log's read transaction", exc_info=True)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(patience - REST_AFTER):
            await wake.wait()


def feed_for(database: Database[Any]) -> EventFeed:
    return PostgresFeed(database) if database.is_postgresql else SqliteFeed(database)
