"""What a process needs to run engine code from synchronous Celery tasks.

The engine is async; a Celery task is not. Each worker process keeps one event loop
in a thread, with its own database pool, and tasks hand it coroutines. `wfe dev`
installs its own runtime instead, whose loop is the server's, so the in-process
worker and the server share one embedded database.

On PostgreSQL a worker process also runs a `CommitNotifier`: after its commits of events,
the servers' live streams are woken (`engine.wakeups`).

Steps of I/O-bound tools come to a process on its I/O lane (`workers.io_lane`), which
runs them on the same loop, many at once, while the process's tasks go on.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.dispatch import Publisher
from engine.engine import Engine
from engine.tools import ToolRegistry
from engine.wakeups import CommitNotifier
from foundation.settings import from_environment
from tenancy.database import TenantDatabase

T = TypeVar("T")


@dataclass(frozen=True)
class Runtime:
    engine: Engine
    loop: asyncio.AbstractEventLoop
    publisher: Publisher

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the runtime's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


_lock = threading.Lock()
_runtime: Runtime | None = None
_owner_pid: int | None = None


def install(runtime: Runtime) -> None:
    """Use `runtime` in this process (embedded mode)."""
    global _runtime, _owner_pid
    with _lock:
        _runtime, _owner_pid = runtime, os.getpid()


def existing() -> Runtime | None:
    """This process's runtime if it built one, without waiting on the lock (a signal
    handler may ask while this thread holds it)."""
    return _runtime if _owner_pid == os.getpid() else None


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
    return Runtime(engine, loop, publisher)
