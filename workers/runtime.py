"""What a process needs to run engine code from synchronous Celery tasks.

The engine is async; a Celery task is not. Each worker process keeps one event loop
in a thread, with its own database pool, and tasks hand it coroutines. `wfe dev`
installs its own runtime instead, whose loop is the server's, so the in-process
worker and the server share one embedded database.

On PostgreSQL a worker process also runs a `CommitNotifier`: after its commits of events,
the servers' live streams are woken (`engine.wakeups`).

Fair workers: a step of an I/O-bound tool is taken on in its task (claimed, or read for
a deferred claim: `engine.engine`), then handed to the loop (`hand_off`), and the task
returns: the process takes its next message while the step waits on its call, up to
`worker_io_steps` such steps at once (the next hand-off waits for one to end, so the
process stops taking messages). A heavy tenant's slow calls thus never hold the
processes another tenant's steps need; CPU-bound tools still run one per process. The
message is acknowledged when the task returns, before the step ends: the attempt's lease
stands for it from there (its renewals run on the loop), so a process that dies mid-step
has it run again once the lease runs out, as before; a step not claimed yet is sent
again by the sweeper once its dispatch row's time passes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.dispatch import Publisher
from engine.engine import Claimed, Engine
from engine.tools import ToolRegistry
from engine.wakeups import CommitNotifier
from foundation.settings import from_environment
from tenancy.database import TenantDatabase

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _names(claimed: Claimed) -> tuple[str, str]:
    return claimed.key.step_id, claimed.key.execution_id


@dataclass
class Runtime:
    engine: Engine
    loop: asyncio.AbstractEventLoop
    publisher: Publisher
    io_steps: int = 0
    """Steps `hand_off` keeps in flight at once; 0: none (every step runs in its task)."""
    _slots: threading.BoundedSemaphore | None = field(default=None, init=False, repr=False)
    _in_flight: set[Future[None]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.io_steps > 0:
            self._slots = threading.BoundedSemaphore(self.io_steps)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the runtime's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def hand_off(self, claimed: Claimed) -> bool:
        """Finish `claimed` on the loop, in the background, and publish what it makes due;
        False when this runtime keeps no steps in flight (the caller runs it then).

        Waits for a free slot first, which is the back-pressure on the task's process.
        """
        if self._slots is None or not claimed.awaits_io:
            return False
        self._slots.acquire()
        try:
            work = asyncio.run_coroutine_threadsafe(self._complete(claimed), self.loop)
        except BaseException:
            self._slots.release()
            raise
        self._in_flight.add(work)
        work.add_done_callback(self._ended)
        return True

    async def _complete(self, claimed: Claimed) -> None:
        try:
            refs = await self.engine.complete_attempt(claimed)
            if refs:
                # Publishing is a blocking call on the broker: not on the loop.
                await self.loop.run_in_executor(None, self.publisher.publish, refs)
        except Exception:
            # The lease (or the dispatch row) stands for the attempt: the step runs again.
            logger.exception("step %s of %s failed in the background", *_names(claimed))

    def _ended(self, work: Future[None]) -> None:
        self._in_flight.discard(work)
        if self._slots is not None:
            self._slots.release()

    def drain(self, patience: float) -> int:
        """Wait up to `patience` seconds for the steps in flight; how many are left."""
        wait(list(self._in_flight), timeout=patience)
        return len(self._in_flight)


_lock = threading.Lock()
_runtime: Runtime | None = None
_owner_pid: int | None = None


def install(runtime: Runtime) -> None:
    """Use `runtime` in this process (embedded mode)."""
    global _runtime, _owner_pid
    with _lock:
        _runtime, _owner_pid = runtime, os.getpid()


def current(publisher_factory: Any) -> Runtime:
    """This process's runtime, built on first use (after a fork, built again)."""
    global _runtime, _owner_pid
    with _lock:
        if _runtime is None or _owner_pid != os.getpid():
            _runtime, _owner_pid = _build(publisher_factory()), os.getpid()
        return _runtime


def _build(publisher: Publisher) -> Runtime:
    settings = from_environment()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="wfe-engine-loop", daemon=True).start()
    # Sized for the transactions of the steps in flight, not for the task concurrency:
    # a pool smaller than what runs at once opens and closes a connection per
    # transaction past it (a server process and a commit each, on PostgreSQL).
    database = TenantDatabase(settings.effective_database_url, pool_size=8, max_overflow=8)
    engine = Engine(database, ToolRegistry(settings), settings)
    if database.is_postgresql:
        loop.call_soon_threadsafe(CommitNotifier(database).start)
    return Runtime(engine, loop, publisher, io_steps=settings.worker_io_steps)


def built() -> Runtime | None:
    """This process's runtime if it has one (none before its first task, or after a fork)."""
    with _lock:
        return _runtime if _owner_pid == os.getpid() else None
