"""Wake-ups between processes on PostgreSQL: "events were committed, look at the log".

A NOTIFY inside every transaction that appends events would cost each of them the lock
PostgreSQL takes to queue notifications at commit, which serialises those commits
(single-row inserts fall from about 13.9k to 3.7k per second here); a NOTIFY in a
transaction of its own after each commit costs a commit each. So each process that
commits events runs a `CommitNotifier`, which sends at most one wake-up per `interval`:
the first transaction to commit events once the interval has passed carries it (one
more statement in a transaction that commits anyway, delivered when it commits, so it
announces its own events and every commit seen before it); commits inside the interval
are announced by the next carrier, or, when none comes within twice the interval, by a
NOTIFY the notifier sends in a transaction of its own. While the process has a
transaction under way (a connection checked out of its pool), that one is likely to
carry it, so the notifier waits for it, up to `FALLBACK_PATIENCE`. Under load no
wake-up costs a commit; a lone commit wakes readers at once. The wake-up carries
nothing: readers find the events in the log (`engine.feed`), which is why coalescing
loses nothing.

Each server process holds one `NotifyListener` connection. A lost wake-up (the listener
reconnecting, a NOTIFY that failed) only delays delivery: the listener wakes its reader
after every (re)connection, and readers look at the log at a fallback interval anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from engine import events
from foundation.database import Database

logger = logging.getLogger(__name__)

CHANNEL: Final = "wfe_events"
NOTIFY_INTERVAL: Final = 0.01
"""A process sends at most one wake-up per this many seconds, however often it commits."""
LISTEN_CHECK_SECONDS: Final = 30.0
"""A listener that heard nothing this long checks that its connection is alive."""
MAX_RECONNECT_SECONDS: Final = 5.0
FALLBACK_PATIENCE: Final = 0.1
"""How long past twice the interval a wake-up waits for a transaction under way to carry it."""

_NOTIFY: Final = text("SELECT pg_notify(:channel, '')")
_COVERS: Final = events.TRANSACTION_SCOPED + "notify_covers"
"""`Session.info` key of a carrier: how many earlier commits its wake-up announces."""


class CommitNotifier:
    """Announces this process's commits of events, at most one wake-up per interval."""

    def __init__(self, database: Database[Any], interval: float = NOTIFY_INTERVAL) -> None:
        self._database = database
        self._interval = interval
        self._poked = asyncio.Event()
        self._carried = asyncio.Event()
        """Set when a commit carried a wake-up (it may have announced what is owed)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._removers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._last_sent = -interval
        """When the last wake-up went out (monotonic), carried or not."""
        self._seen = 0
        """Commits of events without a wake-up of their own, counted in commit-hook order."""
        self._announced = 0
        """How many of those a committed wake-up has announced."""
        self.sent = 0
        self.carried = 0

    def start(self) -> None:
        """Follow the database's commits; call it on the loop that sends the fallbacks."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="wfe-commit-notifier")
        self._removers = [
            events.before_commit(self._database, self.carry),
            events.on_commit(self._database, self.committed),
        ]

    def carry(self, session: Session) -> None:
        """Before a commit of events: if a wake-up is due, this transaction sends it."""
        with self._lock:
            now = time.monotonic()
            if _COVERS in session.info or now - self._last_sent < self._interval:
                return
            self._last_sent = now
            # Every commit whose hook ran before this point committed before this one will.
            session.info[_COVERS] = self._seen
        session.execute(_NOTIFY, {"channel": CHANNEL})

    def committed(self, info: dict[str, Any]) -> None:
        """After a commit of events (any thread): note what is announced, or still is not."""
        covers = info.pop(_COVERS, None)
        with self._lock:
            if covers is not None:
                self._announced = max(self._announced, covers)
                self.sent += 1
                self.carried += 1
            else:
                self._seen += 1
        loop = self._loop
        if covers is not None:
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._carried.set)
            return
        if loop is not None and not self._poked.is_set() and not loop.is_closed():
            loop.call_soon_threadsafe(self._poked.set)

    def _owed(self) -> bool:
        with self._lock:
            return self._announced < self._seen

    def _under_way(self) -> bool:
        """Whether one of this process's transactions is under way (it may carry a wake-up)."""
        checked_out = getattr(self._database.engine.pool, "checkedout", None)
        return checked_out is not None and checked_out() > 0

    async def stop(self) -> None:
        for remove in self._removers:
            remove()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._poked.wait()
            self._poked.clear()
            # Give a later commit the chance to carry it: twice the interval since the last.
            wait = self._last_sent + 2 * self._interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            patience = time.monotonic() + FALLBACK_PATIENCE
            while self._owed() and self._under_way():
                left = patience - time.monotonic()
                if left <= 0:
                    break
                self._carried.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._carried.wait(), min(left, self._interval))
            with self._lock:
                if self._announced >= self._seen:
                    continue
                covers, self._last_sent = self._seen, time.monotonic()
            try:
                async with self._database.engine.connect() as connection:
                    await connection.execute(_NOTIFY, {"channel": CHANNEL})
                    await connection.commit()
                with self._lock:
                    self._announced = max(self._announced, covers)
                    self.sent += 1
            except Exception:
                # Readers still find the events at their fallback interval.
                logger.warning("could not send the events wake-up", exc_info=True)
                await asyncio.sleep(self._interval)
                self._poked.set()  # try again: those commits are still unannounced


class NotifyListener:
    """One LISTEN connection: calls `wake()` on each wake-up and after each (re)connection."""

    def __init__(self, database: Database[Any], wake: Callable[[], None]) -> None:
        url = database.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wfe-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as error:
                # Expected whenever the database restarts: one line, the trace at debug level.
                logger.warning("events listener lost its connection (%s); reconnecting", error)
                logger.debug("events listener connection lost", exc_info=True)
            delay = 0.1 if self.listening.is_set() else min(delay * 2, MAX_RECONNECT_SECONDS)
            self.listening.clear()
            await asyncio.sleep(delay)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            self._wake()  # whatever was committed while nobody listened
            while True:
                heard = False
                async for _ in conn.notifies(timeout=LISTEN_CHECK_SECONDS):
                    heard = True
                    self._wake()
                if not heard:
                    await conn.execute("SELECT 1")
