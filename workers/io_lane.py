"""The I/O lane: steps of tools that await I/O, taken from a queue of their own.

A step of an I/O-bound tool (every dispatched tool not declared `cpu_bound`) is published
to `<queue>.io` (`workers.app.io_queue`). Each worker process consumes that queue on a
thread of its own, with at most `capacity` messages unacknowledged, and runs each step
on the process's event loop; a message is acknowledged once its step has ended, so the
broker holds the rest, most urgent first. The process's Celery tasks, which take the
main queue, never wait for these steps: a heavy tenant's slow calls fill the lane, never
the processes that another tenant's steps need.

A message with a countdown (a retry's back-off) is acknowledged at once and its step
started when due, beside the others: the step's dispatch row stands for it meanwhile, as
it does for any message lost before its claim, so a countdown holds none of the places.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from kombu.messaging import Consumer

from engine.engine import AttemptKey
from foundation.errors import InvalidInput
from tenancy import decode_tenant
from workers.app import STEP_TASK, io_queue
from workers.runtime import Runtime

# kombu's API is untyped: its connections, consumers and messages are handled as Any here.
Message = Any

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05
"""How long the consumer waits on the broker before it acknowledges finished steps."""

RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


class IoLane:
    """Consumes the I/O queue of `app` for this process: `start`, then `stop` to drain."""

    def __init__(self, app: Celery, runtime: Runtime, capacity: int) -> None:
        self.app = app
        self.runtime = runtime
        self.capacity = capacity
        self.queue = app.amqp.queues[io_queue(str(app.conf.task_default_queue))]
        self._finished: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._running: set[Future[None] | asyncio.Future[None]] = set()
        self._draining = threading.Event()
        self._patience_ends = 0.0
        self._thread = threading.Thread(target=self._consume_until_stopped, name="wfe-io-lane")
        self._thread.daemon = True

    def start(self) -> None:
        self._thread.start()

    def stop(self, patience: float) -> int:
        """Take no more messages; wait up to `patience` seconds for the steps running.

        Returns how many still run: their messages go back to the broker when the
        connection closes, and their leases stand for them.
        """
        self._patience_ends = time.monotonic() + patience
        self._draining.set()
        if self._thread.is_alive():
            self._thread.join(timeout=patience + 1.0)
        return len(self._running)

    def _done(self) -> bool:
        if not self._draining.is_set():
            return False
        return not self._running or time.monotonic() >= self._patience_ends

    def _consume_until_stopped(self) -> None:
        failures = 0
        while not self._done():
            try:
                with self.app.connection_for_read() as connection:
                    connection.ensure_connection(max_retries=1)
                    failures = 0
                    self._consume(connection)
            except Exception as error:  # the broker went away: connect again, a bit later
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                logger.warning("I/O lane lost the broker (%s); again in %.1fs", error, delay)
                self._draining.wait(delay)

    def _consume(self, connection: Any) -> None:
        consumer: Any = _consumer(
            connection.default_channel,
            queues=[self.queue],
            callbacks=[self._received],
            accept=["json"],
            prefetch_count=self.capacity,
        )
        with consumer:
            cancelled = False
            while not self._done():
                if self._draining.is_set() and not cancelled:
                    consumer.cancel()
                    cancelled = True
                self._acknowledge_finished()
                try:
                    connection.drain_events(timeout=POLL_SECONDS)
                except TimeoutError:
                    connection.heartbeat_check()
            self._acknowledge_finished()

    def _acknowledge_finished(self) -> None:
        while True:
            try:
                message = self._finished.get_nowait()
            except queue.Empty:
                return
            try:
                message.ack()
            except Exception:  # its channel closed: the broker sends it again, a no-op then
                logger.debug("could not acknowledge an I/O step message", exc_info=True)

    def _received(self, body: Any, message: Message) -> None:
        try:
            self._take(body, message)
        except Exception:
            # Dropped rather than delivered again and again; its dispatch row has it sent
            # again once its time passes.
            logger.exception("could not take an I/O step message: %r", message.headers)
            message.ack()

    def _take(self, body: Any, message: Message) -> None:
        if self._draining.is_set():
            message.requeue()  # delivered before the consumer was cancelled: another takes it
            return
        key = _key_of(body, message.headers)
        if key is None:
            logger.warning("dropping a message that is no step task: %r", message.headers)
            message.ack()
            return
        delay = _seconds_until(message.headers.get("eta"))
        task_id = str(message.headers.get("id") or "") or None
        loop = self.runtime.loop
        if delay > 0:
            message.ack()
            loop.call_soon_threadsafe(loop.call_later, delay, self._start_on_loop, key, task_id)
            return
        work = asyncio.run_coroutine_threadsafe(self._run(key, task_id), loop)
        self._track(work, message)

    def _start_on_loop(self, key: AttemptKey, task_id: str | None) -> None:
        if not self._draining.is_set():  # else its dispatch row has it sent again
            self._track(asyncio.ensure_future(self._run(key, task_id)), None)

    def _track(self, work: Future[None] | asyncio.Future[None], message: Message | None) -> None:
        self._running.add(work)

        def ended(_: object) -> None:
            self._running.discard(work)
            if message is not None:
                self._finished.put(message)

        work.add_done_callback(ended)

    async def _run(self, key: AttemptKey, task_id: str | None) -> None:
        try:
            refs = await self.runtime.engine.run_attempt(key, task_id=task_id, io_lane=True)
            if refs:
                # Publishing is a blocking call on the broker: not on the loop.
                await self.runtime.loop.run_in_executor(None, self.runtime.publisher.publish, refs)
        except Exception:
            # The lease (or the dispatch row) stands for the attempt: the step runs again.
            logger.exception("step %s of %s failed on the I/O lane", key.step_id, key.execution_id)


_consumer: Any = Consumer


def _key_of(body: Any, headers: Mapping[str, Any]) -> AttemptKey | None:
    """The attempt a `steps.run` message names (Celery's message protocol 2)."""
    if headers.get("task") != STEP_TASK or not isinstance(body, list | tuple) or not body:
        return None
    args = body[0]
    if not isinstance(args, list | tuple) or len(args) != 4:
        return None
    tenant, execution_id, step_id, attempt = args
    try:
        return AttemptKey(decode_tenant(tenant), str(execution_id), str(step_id), int(attempt))
    except (InvalidInput, TypeError, ValueError, OverflowError):
        return None


def _seconds_until(eta: Any) -> float:
    if not eta:
        return 0.0
    try:
        due = datetime.fromisoformat(str(eta))
    except ValueError:
        return 0.0
    if due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return max((due - datetime.now(UTC)).total_seconds(), 0.0)
