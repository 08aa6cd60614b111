"""Publishing step tasks: straight to the broker, or from a background thread.

The server answers StartExecution without waiting for the broker: its publisher
hands messages to a thread. A lost message costs only time: the dispatch queue
still has the row, and the sweeper publishes it again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence

from celery import Celery

from engine.dispatch import Publisher, TaskRef
from workers.app import STEP_TASK, broker_priority, io_queue

logger = logging.getLogger(__name__)


class CeleryPublisher:
    """Sends each ref as a `steps.run` task, with its countdown and urgency, to the main
    queue or (a step awaiting I/O) to the I/O lane's."""

    def __init__(self, app: Celery) -> None:
        self._app = app
        self._url = str(app.conf.broker_url)
        self._io_queue = io_queue(str(app.conf.task_default_queue))

    def publish(self, refs: Sequence[TaskRef]) -> None:
        for ref in refs:
            self._app.send_task(
                STEP_TASK,
                args=[ref.tenant_id, ref.execution_id, ref.step_id, ref.attempt],
                countdown=ref.countdown or None,
                priority=broker_priority(ref.rank, self._url),
                queue=self._io_queue if ref.awaits_io else None,
            )


class BackgroundPublisher:
    """Publishes from a daemon thread so the caller never blocks on the broker."""

    def __init__(self, inner: Publisher) -> None:
        self._inner = inner
        self._queue: queue.SimpleQueue[Sequence[TaskRef] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="wfe-publisher", daemon=True)
        self._thread.start()

    def publish(self, refs: Sequence[TaskRef]) -> None:
        if refs:
            self._queue.put(list(refs))

    def _run(self) -> None:
        while (refs := self._queue.get()) is not None:
            try:
                self._inner.publish(refs)
            except Exception:
                # The dispatch rows remain; the sweeper publishes them after the grace period.
                logger.exception("could not publish %d step task(s); the sweeper will", len(refs))

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
