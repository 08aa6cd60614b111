"""The handler that follows the event log across tenants and makes notifications.

Each server process runs one. It reads the log from its saved position (`projections`
row `notifications`) up to where the log is final, turns each page into notifications
(`engine.notifications`), one transaction per tenant, then saves how far it got. On its
first start it begins at the log's end: a new deployment does not notify its past.

It is woken when the process's event hub reads new events (a commit here, or a NOTIFY
from any process), reads up to where the hub found the log final (so the two do not both
poll the log's horizon), and looks at least every `poll_seconds`. Several servers each follow
the log; a notification is keyed by its source event, so the second to handle an event
makes nothing, and a server that restarts before saving its position makes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

from sqlalchemy import select, update

from engine import notifications
from engine.feed import EventFeed, FeedEvent, feed_for, wait_for_wake
from engine.shared_reads import SharedReads
from foundation.database import upsert_insert
from foundation.orm import utcnow
from persistence.models import Projection
from tenancy import TenantId
from tenancy.database import TenantDatabase

logger = logging.getLogger(__name__)

NAME: Final = "notifications"
PAGE: Final = 500
SAVE_SECONDS: Final = 1.0
"""How often the position is saved while the log moves (re-reading since is harmless)."""
RETRY_SECONDS: Final = 1.0
STOP_SECONDS: Final = 10.0
"""How long `stop` lets the round in progress finish before cutting it short."""


class NotificationProjector:
    """Makes the notifications the log calls for, once each, from any number of servers."""

    def __init__(
        self,
        database: TenantDatabase,
        *,
        slow_step_seconds: float,
        slow_step_factor: float,
        poll_seconds: float,
        feed: EventFeed | None = None,
        final: Callable[[], int] | None = None,
    ) -> None:
        """`final`: where the log is final now, as the process's event hub last found it;
        without it the handler asks the log itself (and polls while ids settle)."""
        self._database = database
        self._feed = feed or feed_for(database)
        self._reads = SharedReads(database)
        self._final = final
        self._durations = notifications.StepDurations(
            int(slow_step_seconds * 1000), slow_step_factor
        )
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.position = 0
        self._saved = 0
        self._saved_at = 0.0
        self._stopping = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self.position = self._saved = await self._load()
        self._task = self._loop.create_task(self._follow(), name="wfe-notifications")

    def wake(self) -> None:
        """New events may be final: read soon. Callable from any thread."""
        loop = self._loop
        if loop is not None and not self._wake.is_set() and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def stop(self) -> None:
        """Stop after the round in progress: a database call cut short mid-statement can
        leave its connection checked out (on SQLite, holding the write lock)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_SECONDS)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._save(force=True)
        await self._feed.close()
        await self._reads.close()

    async def _follow(self) -> None:
        while not self._stopping:
            settling = self._final is None and self._feed.settling
            timeout = 0.02 if settling else self._poll
            await wait_for_wake(self._wake, timeout, self._feed)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.catch_up()
            except Exception:
                logger.warning("could not make notifications; trying again", exc_info=True)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RETRY_SECONDS):
                        await self._wake.wait()

    async def catch_up(self) -> None:
        """Handle every event up to where the log is final now."""
        upto = self._final() if self._final is not None else await self._feed.horizon()
        while self.position < upto:
            batch = await self._feed.read(self.position, upto, None, PAGE)
            await self.handle(batch)
            self.position = batch[-1].id if len(batch) == PAGE else upto
            await self._save()
        await self._save()  # a position the throttle held back, once the log is quiet

    async def handle(self, batch: Sequence[FeedEvent]) -> int:
        """Make the notifications `batch` calls for; the number newly made."""
        by_tenant: dict[TenantId, list[notifications.Candidate]] = defaultdict(list)
        for candidate in notifications.candidates(batch, self._durations):
            by_tenant[candidate.source.tenant_id].append(candidate)
        made = 0
        for tenant, found in by_tenant.items():
            # Most candidates go to no one (no opt-in): found out without a transaction.
            addressed = await notifications.address(
                partial(self._reads.read, tenant), tenant, found
            )
            if addressed:
                async with self._database.transaction(tenant) as session:
                    made += await notifications.record(session, tenant, addressed)
        return made

    async def _load(self) -> int:
        async with self._database.engine.begin() as connection:
            saved = await connection.scalar(
                select(Projection.position).where(Projection.name == NAME)
            )
            if saved is not None:
                return int(saved)
        start = await self._feed.horizon()
        insert = upsert_insert(self._database.engine.dialect.name)
        async with self._database.engine.begin() as connection:
            await connection.execute(
                insert(Projection)
                .values(name=NAME, position=start, updated_at=utcnow())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            saved = await connection.scalar(
                select(Projection.position).where(Projection.name == NAME)
            )
        return int(saved if saved is not None else start)

    async def _save(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.position <= self._saved or (not force and now - self._saved_at < SAVE_SECONDS):
            return
        async with self._database.engine.begin() as connection:
            await connection.execute(
                update(Projection)
                .where(Projection.name == NAME, Projection.position < self.position)
                .values(position=self.position, updated_at=utcnow())
            )
        self._saved, self._saved_at = self.position, now
