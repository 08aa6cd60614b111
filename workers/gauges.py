"""The gauges the beat process answers when scraped: the broker's queue depths and the
executions waiting for a concurrency slot. Beat runs once per deployment, so each is
read once, not once per worker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from amqp.exceptions import ChannelError
from celery import Celery

from engine.backlog import Backlog
from foundation.metrics import read_when_scraped
from workers import runtime
from workers.app import io_queue
from workers.publisher import CeleryPublisher

logger = logging.getLogger(__name__)

Sample = tuple[tuple[str, ...], float]


def queue_depths(app: Celery, queues: Iterable[str]) -> list[Sample]:
    """Messages waiting in each queue (Redis: all its priority lists), as the broker says;
    a queue the broker does not know holds nothing (Redis forgets an empty one)."""
    samples: list[Sample] = []
    try:
        with app.connection_for_read() as connection:
            for name in queues:
                with connection.channel() as channel:  # a refused declare closes its channel
                    try:
                        declared = channel.queue_declare(queue=name, passive=True)
                    except ChannelError:
                        samples.append(((name,), 0.0))
                    else:
                        samples.append(((name,), float(declared.message_count)))
    except Exception:  # a scrape must answer: the broker's absence shows as no sample
        logger.warning("could not read the broker's queue depths", exc_info=True)
    return samples


def install(app: Celery) -> list[Callable[[], None]]:
    """Answer `wfe_queue_depth` and `wfe_admission_queue_length` from this process."""
    queue = str(app.conf.task_default_queue)
    active = runtime.current(lambda: CeleryPublisher(app))
    backlog = Backlog(active.engine.database)

    def waiting_for_slots() -> list[Sample]:
        try:
            by_tier = active.call(backlog.read())
        except Exception:
            logger.warning("could not count the executions waiting for a slot", exc_info=True)
            return []
        return [((tier,), float(count)) for tier, count in sorted(by_tier.items())]

    return [
        read_when_scraped(
            "wfe_queue_depth", ("queue",), lambda: queue_depths(app, (queue, io_queue(queue)))
        ),
        read_when_scraped("wfe_admission_queue_length", ("tier",), waiting_for_slots),
    ]
