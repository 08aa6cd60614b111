"""The Celery application: broker settings that keep at-least-once delivery safe.

Messages are acknowledged after the task returns (`task_acks_late`) and given back
when the worker process dies (`task_reject_on_worker_lost`); each worker process
takes one message at a time (`worker_prefetch_multiplier=1`), so a long step never
holds others hostage in its prefetch buffer. Tasks are idempotent: they re-read
their rows and act only if the attempt is still due.

Urgency: a step task carries a rank (0 most urgent, from the tenant's load). Redis
serves lower priority numbers first and RabbitMQ higher ones, so the rank is
turned into the broker's own scale here.

Steps of tools that await I/O have a queue of their own (`io_queue`), which each worker
process consumes apart from its tasks (`workers.io_lane`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from celery import Celery
from kombu.entity import Queue

from engine.dispatch import MAX_RANK
from foundation.settings import Settings

STEP_TASK: Final = "steps.run"
SWEEP_TASK: Final = "executions.sweep"
PURGE_TASK: Final = "executions.purge"


def io_queue(queue_name: str) -> str:
    """The queue of the steps that await I/O (`workers.io_lane`), beside `queue_name`."""
    return f"{queue_name}.io"


def _queue(name: str, url: str) -> Queue:
    if is_amqp(url):
        return Queue(name, queue_arguments={"x-max-priority": MAX_RANK + 1})
    return Queue(name)


def is_amqp(broker_url: str) -> bool:
    return broker_url.split("://", 1)[0] in {"amqp", "amqps", "pyamqp"}


def broker_priority(rank: int, broker_url: str) -> int:
    """The broker's priority number for an urgency rank."""
    rank = min(max(rank, 0), MAX_RANK)
    return MAX_RANK - rank if is_amqp(broker_url) else rank


def create_app(settings: Settings, *, broker_url: str | None = None) -> Celery:
    url = broker_url or settings.broker_url
    app = Celery("wfe", broker=url, include=["workers.tasks"])
    transport: dict[str, Any] = {}
    if url.startswith(("redis://", "rediss://")):
        transport = {
            "priority_steps": list(range(MAX_RANK + 1)),
            "sep": ":",
            "queue_order_strategy": "priority",
            # Redelivery of unacknowledged messages; the sweeper's lease recovers sooner, and a
            # redelivered step already running is refused by its lease (never run twice at once).
            "visibility_timeout": settings.broker_visibility_timeout_seconds,
        }
    elif url.startswith("memory://"):
        transport = {"polling_interval": 0.01}
    queue = settings.queue_name
    app.conf.update(
        task_default_queue=queue,
        task_queues=[_queue(name, url) for name in (queue, io_queue(queue))],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
        worker_concurrency=settings.worker_concurrency,
        timezone="UTC",
        beat_schedule={
            "sweep": {
                "task": SWEEP_TASK,
                "schedule": timedelta(seconds=settings.sweep_interval_seconds),
                "options": {"priority": broker_priority(0, url)},
            },
            "purge": {
                "task": PURGE_TASK,
                "schedule": timedelta(seconds=settings.purge_interval_seconds),
            },
        },
    )
    return app
