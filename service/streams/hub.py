"""The live side of the event log in one server process: one reader, many streams.

One dispatcher per process reads the log across tenants (`engine.feed`) up to where it is
final, and hands each batch to the matching subscriptions in memory; `position` is how
far it has got. It reads when woken (a commit in this process; on PostgreSQL, a NOTIFY
from any process, heard on the process's one LISTEN connection), while ids wait for
writers in flight, and at least every `poll_seconds`. Embedded (SQLite) mode runs the
same dispatcher, woken in-process by the commits it makes.

A stream (`stream()`) starts at an event id: the one a client resumes after, or
`position` for "from now on". While it is behind `position` it reads its own tenant's
events of its topics from the log, through the tenant's session as every read does;
once it has caught up it turns live and the dispatcher appends to its bounded buffer. A
stream whose buffer is full falls back to reading from the log, so a slow client costs
a buffer and a cursor, never an unbounded queue. Either way an event reaches the stream
once, in id order: the stream reads only up to `position`, and the dispatcher hands it
only events after its cursor.

`close()` (server shutdown) ends every stream with UNAVAILABLE; clients resume elsewhere
from the last event id they received. `consumers` see every batch the dispatcher reads, a
hook for work that follows the log in-process (with one, it reads every tenant's events);
`followers` are only told that the log moved on (the notification handler reads it itself).

Streams come and go at any moment, so their reads are never cut short: a database call
cancelled midway can leave its connection checked out, and on SQLite holding the write
lock, which would stop every writer (SQLAlchemy's asyncio connections and aiosqlite do
not survive a cancellation mid-statement). Each read runs as a task of its own that a
cancelled caller leaves to finish; `stop()` waits for those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from engine import events
from engine.feed import EventFeed, FeedEvent, feed_for, wait_for_wake
from engine.topics import Topics
from engine.wakeups import CommitNotifier, NotifyListener
from foundation.errors import QuotaExhausted, Unavailable
from foundation.metrics import read_when_scraped
from service.streams.allowance import StreamAllowance, terms_for
from service.streams.registry import Subscription, SubscriptionRegistry
from tenancy import TenantId
from tenancy.database import TenantDatabase

logger = logging.getLogger(__name__)

PAGE: Final = 1000
"""Events one read of the dispatcher takes."""
SETTLE_SECONDS: Final = 0.02
"""How soon the dispatcher looks again while ids wait for writers in flight."""
RETRY_SECONDS: Final = 1.0
"""How soon the dispatcher tries again after the database failed it."""

Consumer = Callable[[Sequence[FeedEvent]], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing happened for a heartbeat interval; the stream is alive."""

    sent_at: datetime


class EventHub:
    """The process's event dispatcher and its subscriptions.

    Args:
        database: The service's database.
        heartbeat_seconds: An idle stream sends a `Heartbeat` this often.
        buffer_events: Events a live stream holds before it falls back to the log.
        poll_seconds: The dispatcher reads at least this often, woken or not.
    """

    def __init__(
        self,
        database: TenantDatabase,
        *,
        heartbeat_seconds: float,
        buffer_events: int,
        poll_seconds: float,
        feed: EventFeed | None = None,
    ) -> None:
        self._database = database
        self._feed = feed or feed_for(database)
        self._heartbeat = heartbeat_seconds
        self._capacity = buffer_events
        self._poll = poll_seconds
        self.registry = SubscriptionRegistry()
        self.consumers: list[Consumer] = []
        self.followers: list[Callable[[], None]] = []
        self.position = 0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._reads: set[asyncio.Task[Any]] = set()
        self._remove: Callable[[], None] | None = None
        self._notifier: CommitNotifier | None = None
        self._listener: NotifyListener | None = None
        self._unmeasure: Callable[[], None] | None = None

    async def start(self) -> None:
        """Start at the log's current end: streams without a resume id begin here."""
        self._loop = asyncio.get_running_loop()
        self.position = await self._feed.horizon()
        self._remove = events.on_commit(self._database, lambda _info: self.wake())
        if self._database.is_postgresql:
            self._notifier = CommitNotifier(self._database)
            self._notifier.start()
            self._listener = NotifyListener(self._database, self.wake)
            self._listener.start()
        self._tasks.append(self._loop.create_task(self._dispatch(), name="wfe-event-dispatcher"))
        self._unmeasure = read_when_scraped(
            "wfe_stream_subscribers", (), lambda: [((), float(self.registry.count()))]
        )

    def wake(self) -> None:
        """Events may have been committed: read the log soon. Callable from any thread."""
        loop = self._loop
        if loop is not None and not self._wake.is_set() and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    def close(self) -> None:
        """End every stream with UNAVAILABLE, and refuse new ones (the server is stopping)."""
        self._closed = True
        self.registry.close_all()

    async def stop(self) -> None:
        """Stop reading and listening; give back the connections."""
        self.close()
        if self._unmeasure is not None:
            self._unmeasure()
        if self._remove is not None:
            self._remove()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*self._reads, return_exceptions=True)
        for part in (self._notifier, self._listener):
            if part is not None:
                await part.stop()
        await self._feed.close()

    async def terms(self, tenant: TenantId, topics: Topics) -> StreamAllowance:
        """How the tenant's plan lets it watch `topics`: refused (TIER_RESTRICTION) if not
        at all, or if it already holds all the streams its plan allows."""
        terms = await self._uncut(terms_for(self._database, tenant, topics))
        _within_cap(terms, self.registry.count(tenant))
        return terms

    async def stream(
        self,
        tenant: TenantId,
        topics: Topics,
        after: int | None,
        terms: StreamAllowance | None = None,
    ) -> AsyncIterator[FeedEvent | Heartbeat]:
        """The tenant's events of `topics` after event id `after` (None: from now on), in id
        order, with a `Heartbeat` when idle; raises `Unavailable` when the server stops, and
        `QuotaExhausted` if the tenant already holds the streams `terms` allow (checked
        again here, where the stream is counted, without an await in between)."""
        if self._closed:
            raise _going_away()
        if terms is not None:
            _within_cap(terms, self.registry.count(tenant))
        subscription = Subscription(
            tenant, topics, self.position if after is None else after, self._capacity
        )
        self.registry.add(subscription)
        try:
            while True:
                if subscription.closed:
                    raise _going_away()
                if subscription.pending:
                    yield subscription.pending.popleft()
                elif not subscription.live:
                    if subscription.cursor >= self.position:
                        subscription.live = True
                    else:
                        await self._catch_up(subscription)
                else:
                    subscription.wake.clear()
                    try:
                        async with asyncio.timeout(self._heartbeat):
                            await subscription.wake.wait()
                    except TimeoutError:
                        yield Heartbeat(datetime.now(UTC))
        finally:
            self.registry.remove(subscription)

    async def _catch_up(self, subscription: Subscription) -> None:
        """Fill the buffer from the log, after the cursor and up to `position`."""
        upto = self.position
        room = subscription.capacity
        found = await self._uncut(self._read_log(subscription, upto, room))
        subscription.pending.extend(found)
        subscription.cursor = found[-1].id if len(found) == room else upto

    async def _read_log(self, subscription: Subscription, upto: int, limit: int) -> list[FeedEvent]:
        async with self._database.transaction(subscription.tenant) as session:
            rows = await events.read_topics(
                session, subscription.topics, subscription.cursor, upto, limit
            )
            return [FeedEvent.of(row) for row in rows]

    def _uncut(self, read: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """`read`, run to its end even if the caller is cancelled meanwhile."""
        task = asyncio.ensure_future(read)
        self._reads.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._reads.discard)
        return asyncio.shield(task)

    async def _dispatch(self) -> None:
        while True:
            timeout = SETTLE_SECONDS if self._feed.settling else self._poll
            await wait_for_wake(self._wake, timeout, self._feed)
            self._wake.clear()
            try:
                await self._round()
            except Exception:
                logger.warning("could not read the event log; trying again", exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)

    async def _round(self) -> None:
        """Read from `position` to the log's final id and hand it out, page by page."""
        upto = await self._uncut(self._feed.horizon())
        previous = self.position
        while self.position < upto:
            tenants = None if self.consumers else self.registry.tenants()
            batch: list[FeedEvent] = []
            if tenants is None or tenants:
                batch = await self._uncut(self._feed.read(self.position, upto, tenants, PAGE))
            reached = batch[-1].id if len(batch) == PAGE else upto
            self.registry.dispatch(batch, tenants)
            for consumer in self.consumers:
                consumer(batch)
            self.position = reached
        if self.followers and self.position >= upto > previous:
            for follower in self.followers:
                follower()


def _settled(task: asyncio.Task[Any]) -> None:
    """Retrieve the outcome of a read whose caller went away (else asyncio reports it)."""
    if not task.cancelled():
        task.exception()


def _within_cap(terms: StreamAllowance, held: int) -> None:
    if held >= terms.max_subscriptions:
        raise QuotaExhausted(
            f"max_subscriptions is {terms.max_subscriptions} on the {terms.tier} tier; "
            "end a stream before opening another",
            metadata={
                "tier": terms.tier,
                "quota": "max_subscriptions",
                "limit": terms.max_subscriptions,
                "used": held,
            },
        )


def _going_away() -> Unavailable:
    return Unavailable(
        "the server is shutting down; subscribe again with after_event_id set to the last "
        "event id received",
        metadata={"retry": "resume"},
    )
