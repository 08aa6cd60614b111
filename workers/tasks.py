"""The Celery tasks: thin shells that hand ids to the engine and publish what it returns."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, current_app, shared_task
from celery.signals import worker_process_shutdown

from engine.engine import AttemptKey
from tenancy import decode_tenant
from workers import runtime
from workers.app import PURGE_TASK, STEP_TASK, SWEEP_TASK
from workers.publisher import CeleryPublisher

logger = logging.getLogger(__name__)

DRAIN_SECONDS = 10.0


def _runtime() -> runtime.Runtime:
    return runtime.current(lambda: CeleryPublisher(current_app))


@shared_task(name=STEP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_step(
    task: Task[Any, Any], tenant_id: str, execution_id: str, step_id: str, attempt: int
) -> None:
    """Run one step attempt if it is still due; publish the steps it made due.

    A claimed step of an I/O-bound tool goes on in the background (`Runtime.hand_off`)
    and the task returns, freeing the process for the next message.
    """
    active = _runtime()
    key = AttemptKey(decode_tenant(tenant_id), execution_id, step_id, attempt)
    claimed, refs = active.call(active.engine.begin_attempt(key, task_id=task.request.id))
    active.publisher.publish(refs)
    if claimed is None or active.hand_off(claimed):
        return
    active.publisher.publish(active.call(active.engine.complete_attempt(claimed)))


@worker_process_shutdown.connect
def _finish_steps_in_flight(**_: Any) -> None:
    """A worker process stopping gives its background steps a moment to end; the rest
    are run again once their leases run out."""
    active = runtime.built()
    if active is not None and (left := active.drain(DRAIN_SECONDS)):
        logger.warning("stopping with %d step(s) in flight; their leases will expire", left)


@shared_task(name=SWEEP_TASK, acks_late=True)
def sweep() -> int:
    """Publish again every attempt that is overdue or whose lease ran out."""
    active = _runtime()
    refs = active.call(active.engine.sweep())
    active.publisher.publish(refs)
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
