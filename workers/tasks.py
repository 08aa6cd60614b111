"""The Celery tasks: thin shells that hand ids to the engine and publish what it returns."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Task, current_app, shared_task
from celery.signals import worker_process_init, worker_process_shutdown

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
            logger.warning("stopping with %d step(s) in flight: handing them back", left)
            active = lane.runtime
            try:
                active.publisher.publish(active.call(active.engine.hand_back()))
            except Exception:  # their leases still stand for them
                logger.exception("could not hand the steps back; their leases will expire")


def _forget_samples(**_: Any) -> None:
    """This forked process ends: its live gauges stop counting in the parent's endpoint,
    and the spans it still holds are exported."""
    child_exited(os.getpid())
    tracing.flush()


# Each prefork process takes the lane; `wfe worker` connects the same for the other pools.
worker_process_init.connect(take_io_lane, weak=False)
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
