"""A steady writer of events for the stream benchmark, in a process of its own.

It commits `rate` events a second to the log the way the engine's workers do: its own
`TenantDatabase` pool on the service role, `engine.events.append` in a transaction of
its own per event, and a `CommitNotifier` on its loop, so that after its commits the
servers hear one coalesced NOTIFY (`engine.wakeups`), exactly as after a worker's. The
engine itself is left out so that the rate is steady and the stream side is all that is
measured.

It first commits one event per topic, so that each stream replays one as soon as it is
open, and says it is ready; it starts the steady writing only on `go`, once every
stream is open, so that setting up the streams never competes with the load.

Each event is a `workflow_execution_log` whose line is the wall-clock time taken just
before its transaction began: the subscribers' latency runs from there, so it includes
the insert and the commit (their durations are reported, to say by how much). The
ticks are shared round-robin by a few writing coroutines on an absolute schedule, so
one slow commit delays only its own event and a late writer catches up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Final

from engine import events
from engine.wakeups import CommitNotifier
from tenancy import TenantId
from tenancy.database import TenantDatabase

WRITERS: Final = 4
"""Coroutines sharing the ticks; each commits one event at a time."""


@dataclass(frozen=True)
class Topic:
    """Where one tenant's events go: its workflow and an execution id its streams follow."""

    tenant_id: str
    workflow_id: str
    execution_id: str


@dataclass(frozen=True)
class Written:
    """Per committed event: the time it carries, and how long until its commit returned."""

    stamps: list[float]
    commit_seconds: list[float]
    notifies: int


async def _append(database: TenantDatabase, topic: Topic) -> float:
    """Commit one event stamped now, in a transaction of its own; the stamp."""
    stamp = time.time()
    async with database.transaction(TenantId(topic.tenant_id)) as session:
        await events.append(
            session,
            "workflow_execution_log",
            {"step_id": "bench", "level": "info", "message": repr(stamp)},
            workflow_id=topic.workflow_id,
            execution_id=topic.execution_id,
        )
    return stamp


async def _write(
    url: str, topics: Sequence[Topic], rate: float, ready: Event, go: Event, stop: Event
) -> Written:
    database = TenantDatabase(url, pool_size=WRITERS + 1, max_overflow=2)
    notifier = CommitNotifier(database)
    notifier.start()
    stamps: list[float] = []
    spent: list[float] = []

    async def writer(first: int, began: float) -> None:
        tick = first
        while not stop.is_set():
            delay = began + tick / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stamp = await _append(database, topics[tick % len(topics)])
            spent.append(time.time() - stamp)
            stamps.append(stamp)
            tick += WRITERS

    try:
        for topic in topics:
            await _append(database, topic)
        ready.set()
        await asyncio.to_thread(go.wait)
        began = time.monotonic()
        await asyncio.gather(*(writer(first, began) for first in range(WRITERS)))
    finally:
        await notifier.stop()
        await database.dispose()
    return Written(stamps, spent, notifier.sent)


def write(
    url: str,
    topics: Sequence[Topic],
    rate: float,
    ready: Event,
    go: Event,
    stop: Event,
    results: Queue[Written],
) -> None:
    """The process: one event per topic, `ready`; on `go` write until `stop`, then put
    what was written on `results`."""
    results.put(asyncio.run(_write(url, topics, rate, ready, go, stop)))
