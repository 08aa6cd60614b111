"""The engine inside one process, for `wfe dev` and the embedded test runs.

The same Celery app, tasks and engine as `wfe worker`, on an in-memory broker with
a thread-pool worker; periodic jobs (sweep, purge) run on the server's event loop.
Nothing outside the process is needed: no broker, no database server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from engine.engine import Engine
from engine.tools import ToolRegistry
from foundation.settings import Settings
from tenancy.database import TenantDatabase
from workers import runtime
from workers.app import create_app, io_queue
from workers.publisher import BackgroundPublisher, CeleryPublisher

logger = logging.getLogger(__name__)

IN_MEMORY_BROKER = "memory://localhost/"


class EmbeddedEngine:
    """An in-process worker and periodic jobs sharing the server's loop and database."""

    def __init__(self, settings: Settings, database: TenantDatabase) -> None:
        self.settings = settings
        # A host in the URL, though the memory transport ignores it: without one kombu
        # warns "No hostname was supplied" on every connection.
        self.app = create_app(settings, broker_url=IN_MEMORY_BROKER)
        self.engine = Engine(database, ToolRegistry(settings), settings)
        self._direct = CeleryPublisher(self.app)
        # The server's publisher: hands messages to a thread, never blocks the loop.
        self.publisher = BackgroundPublisher(self._direct)
        self._worker: Any = None
        self._thread: threading.Thread | None = None
        self._jobs: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        runtime.install(runtime.Runtime(self.engine, asyncio.get_running_loop(), self._direct))
        self._worker = self.app.WorkController(
            pool_cls="threads",
            concurrency=self.settings.worker_concurrency,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            hostname="wfe-embedded@localhost",
            loglevel=self.settings.log_level,
            # One pool for both queues: a step awaiting I/O holds one of its threads.
            queues=[self.settings.queue_name, io_queue(self.settings.queue_name)],
        )
        self._thread = threading.Thread(
            target=self._worker.start, name="wfe-embedded-worker", daemon=True
        )
        self._thread.start()
        self._jobs = [
            asyncio.create_task(self._every(self.settings.sweep_interval_seconds, self._sweep)),
            asyncio.create_task(self._every(self.settings.purge_interval_seconds, self._purge)),
        ]

    async def _sweep(self) -> None:
        self.publisher.publish(await self.engine.sweep())

    async def _purge(self) -> None:
        await self.engine.purge()

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                logger.exception("periodic job %s failed; it runs again later", job.__name__)

    async def stop(self) -> None:
        for job in self._jobs:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
        self.publisher.close()
        if self._worker is not None:
            # The worker's threads wait on this loop; stop it from another thread.
            await asyncio.to_thread(self._worker.stop)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        await self.engine.close()
