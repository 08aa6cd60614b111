"""The Celery tasks: thin shells that hand ids to the engine and publish what it returns."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, current_app, shared_task

from engine.engine import AttemptKey
from tenancy import decode_tenant
from workers import runtime
from workers.app import PURGE_TASK, STEP_TASK, SWEEP_TASK
from workers.publisher import CeleryPublisher

logger = logging.getLogger(__name__)


def _runtime() -> runtime.Runtime:
    return runtime.current(lambda: CeleryPublisher(current_app))


@shared_task(name=STEP_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_step(
    task: Task[Any, Any], tenant_id: str, execution_id: str, step_id: str, attempt: int
) -> None:
    """Run one step attempt if it is still due; publish the steps it made due."""
    active = _runtime()
    key = AttemptKey(decode_tenant(tenant_id), execution_id, step_id, attempt)
    refs = active.call(active.engine.run_attempt(key, task_id=task.request.id))
    active.publisher.publish(refs)


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
