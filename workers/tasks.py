"""The Celery tasks: thin shells that hand ids to the engine and publish what it returns."""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import suppress
from typing import Any

from billiard.process import active_children
from celery import Task, current_app, shared_task
from celery.signals import worker_process_init, worker_process_shutdown, worker_shutting_down

from engine.engine import AttemptKey
from foundation import tracing
from foundation.metrics import child_exited, metrics
from foundation.settings import from_environment
from tenancy import decode_tenant
from workers import runtime
from workers.app import PURGE_TASK, STEP_TASK, SWEEP_TASK
from workers.io_lane import IoLane
from workers.publisher import CeleryPublisher

logger = logging.getLogger(__name__)


def _runtime() -> runtime.Runtime:
    return runtime.current(lambda: CeleryPublisher(current_app))


@shared_task(name=STEP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_step(
    task: Task[Any, Any], tenant_id: str, execution_id: str, step_id: str, attempt: int
) -> None:
    """Run one step attempt if it is still due; publish the steps it made due.

    Steps of I/O-bound tools come on the I/O lane instead (`workers.io_lane`); one that
    comes here (a worker consuming both queues with `WFE_WORKER_IO_STEPS=0`) runs here.
    """
    active = _runtime()
    key = AttemptKey(decode_tenant(tenant_id), execution_id, step_id, attempt)
    active.publisher.publish(active.call(active.engine.run_attempt(key, task.request.id)))


_lane: IoLane | None = None


def take_io_lane(**_: Any) -> None:
    """Consume the I/O lane in this process, `WFE_WORKER_IO_STEPS` steps at once."""
    global _lane
    capacity = from_environment().worker_io_steps
    if capacity > 0 and _lane is None:
        _lane = IoLane(current_app, _runtime(), capacity)
        _lane.start()


def leave_io_lane(**_: Any) -> None:
    """Take no more I/O steps and give those running up to `WFE_SHUTDOWN_GRACE_SECONDS` to
    end; hand the rest back, for other workers to take over now."""
    global _lane
    if _lane is not None:
        lane, _lane = _lane, None
        if left := lane.stop(from_environment().shutdown_grace_seconds):
            logger.warning(
                "stopping with %d step(s) in flight: handing the running steps back", left
            )
            hand_back(lane.runtime)


def hand_back(active: runtime.Runtime) -> None:
    """Stop the steps this process runs and publish them again for other workers."""
    try:
        active.publisher.publish(active.call(active.engine.hand_back()))
    except Exception:  # their leases still stand for them
        logger.exception("could not hand the steps back; their leases will expire")


HAND_BACK_SIGNAL = signal.SIGUSR2
"""Sent by a stopping worker to its task processes once the grace has passed (unused by
Celery's and billiard's task processes, which take SIGUSR1 for soft time limits)."""


def stop_after_grace(how: str = "", **_: Any) -> None:
    """The worker was asked to stop: a warm shutdown waits for the running tasks as long
    as they take, so after `WFE_SHUTDOWN_GRACE_SECONDS` the steps still running are
    handed back. Task processes are signalled for it (`HAND_BACK_SIGNAL`); the other pools
    run tasks in this process, which hands them back itself."""
    if how == "Warm":
        timer = threading.Timer(from_environment().shutdown_grace_seconds, _past_the_grace)
        timer.daemon = True
        timer.start()


def _past_the_grace() -> None:
    children = [child.pid for child in active_children() if child.pid is not None]
    for pid in children:
        with suppress(ProcessLookupError):
            os.kill(pid, HAND_BACK_SIGNAL)
    if not children and (active := runtime.existing()) is not None and active.engine.running():
        _hand_back_late(active)


def _hand_back_now(*_: Any) -> None:
    """In a task process, on `HAND_BACK_SIGNAL`: hand back what it runs. Its task then
    ends as a lost attempt does (acknowledged, nothing recorded) and the pool stops the
    process. Done on a thread: the signal may come in the middle of a publish."""
    if (active := runtime.existing()) is not None and active.engine.running():
        threading.Thread(target=_hand_back_late, args=(active,), name="wfe-hand-back").start()


def _hand_back_late(active: runtime.Runtime) -> None:
    logger.warning("the shutdown grace has passed: handing the running steps back")
    hand_back(active)


def _take_hand_back_signal(**_: Any) -> None:
    signal.signal(HAND_BACK_SIGNAL, _hand_back_now)


def _forget_samples(**_: Any) -> None:
    """This forked process ends: its live gauges stop counting in the parent's endpoint,
    and the spans it still holds are exported."""
    child_exited(os.getpid())
    tracing.flush()


# Each prefork process takes the lane; `wfe worker` connects the same for the other pools.
worker_process_init.connect(take_io_lane, weak=False)
worker_process_init.connect(_take_hand_back_signal, weak=False)
worker_shutting_down.connect(stop_after_grace, weak=False)
worker_process_shutdown.connect(leave_io_lane, weak=False)
worker_process_shutdown.connect(_forget_samples, weak=False)


@shared_task(name=SWEEP_TASK, acks_late=True)
def sweep() -> int:
    """Publish again every attempt that is overdue or whose lease ran out."""
    active = _runtime()
    refs = active.call(active.engine.sweep())
    active.publisher.publish(refs)
    metrics().sweeper_republished.inc(len(refs))
    if refs:
        logger.info("sweeper re-published %d step task(s)", len(refs))
    return len(refs)


@shared_task(name=PURGE_TASK, acks_late=True)
def purge() -> int:
    """Delete finished executions past their tenant's history retention."""
    active = _runtime()
    purged = active.call(active.engine.purge())
    if purged:
        logger.info("purged %d execution(s) past retention", purged)
    return purged
