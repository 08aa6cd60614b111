"""Wake-ups between processes on PostgreSQL: "events were committed, look at the log".

A NOTIFY inside the transaction that appends events would cost every such transaction
the lock PostgreSQL takes to queue notifications at commit, which serialises those
commits (single-row inserts fall from about 13.9k to 3.7k per second here). So no
transaction that writes events notifies. Instead each process that commits events runs a
`CommitNotifier`: a commit only sets a flag, and a background task sends one NOTIFY, in
a transaction of its own, for every burst of commits, at most one per `interval`. The
wake-up carries nothing: readers find the events in the log (`engine.feed`), which is why
coalescing loses nothing.

Each server process holds one `NotifyListener` connection. A lost wake-up (the listener
reconnecting, a NOTIFY that failed) only delays delivery: the listener wakes its reader
after every (re)connection, and readers look at the log at a fallback interval anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

import psycopg
from sqlalchemy import text

from engine import events
from foundation.database import Database

logger = logging.getLogger(__name__)

CHANNEL: Final = "wfe_events"
NOTIFY_INTERVAL: Final = 0.01
"""A process sends at most one wake-up per this many seconds, however often it commits."""
LISTEN_CHECK_SECONDS: Final = 30.0
"""A listener that heard nothing this long checks that its connection is alive."""
MAX_RECONNECT_SECONDS: Final = 5.0


class CommitNotifier:
    """Sends one NOTIFY per burst of this process's commits of events, after they commit."""

    def __init__(self, database: Database[Any], interval: float = NOTIFY_INTERVAL) -> None:
        self._database = database
        self._interval = interval
        self._poked = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._remove: Callable[[], None] | None = None
        self.sent = 0

    def start(self) -> None:
        """Listen to the database's commits; call it on the loop that will send."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="wfe-commit-notifier")
        self._remove = events.on_commit(self._database, self.poke)

    def poke(self) -> None:
        """Events were committed: a wake-up goes out soon. Callable from any thread."""
        loop = self._loop
        if loop is not None and not self._poked.is_set() and not loop.is_closed():
            loop.call_soon_threadsafe(self._poked.set)

    async def stop(self) -> None:
        if self._remove is not None:
            self._remove()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._poked.wait()
            self._poked.clear()
            try:
                async with self._database.engine.connect() as connection:
                    await connection.execute(
                        text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL}
                    )
                    await connection.commit()
                self.sent += 1
            except Exception:
                # Readers still find the events at their fallback interval.
                logger.warning("could not send the events wake-up", exc_info=True)
            await asyncio.sleep(self._interval)


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
            except (psycopg.Error, OSError):
                logger.warning("events listener lost its connection; reconnecting", exc_info=True)
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
