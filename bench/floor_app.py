"""The Celery floor: no-op tasks on an app configured exactly as the engine's.

The app is built by `workers.app.create_app`, so acks_late, reject-on-worker-lost,
prefetch 1, JSON, ignored results and the Redis priority-queue transport are the
engine's own; only the tasks differ. `python -m bench.floor_app` starts its worker
with the arguments `wfe worker` passes (prefork, same concurrency, no mingle/gossip).
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

import redis
from celery import Celery

from foundation.settings import Settings
from service import logs
from workers.app import create_app

NOOP_TASK: Final = "bench.noop"
CHORD_NOOP_TASK: Final = "bench.chord_noop"
"""A no-op whose result is kept: a chord's header joins on its members' results."""
DONE_TASK: Final = "bench.done"
ENV_BROKER: Final = "BENCH_FLOOR_BROKER_URL"
ENV_QUEUE: Final = "BENCH_FLOOR_QUEUE"
ENV_CONCURRENCY: Final = "BENCH_FLOOR_CONCURRENCY"
ENV_MARKER: Final = "BENCH_FLOOR_MARKER_URL"

_marker: redis.Redis | None = None


def _marker_client() -> redis.Redis:
    """One Redis client per worker process (built after the prefork fork)."""
    global _marker
    if _marker is None:
        _marker = redis.Redis.from_url(os.environ[ENV_MARKER])
    return _marker


def noop() -> None:
    """A step that does nothing: what a Celery task costs on its own."""


def done(key: str) -> None:
    """The chain's last no-op; records when it finished so the bench can time the batch."""
    client = _marker_client()
    with client.pipeline(transaction=False) as pipe:
        pipe.incr(f"{key}:count")
        pipe.rpush(f"{key}:times", repr(time.time()))
        pipe.execute()


def create_floor_app(broker_url: str, queue: str, concurrency: int, backend: str) -> Celery:
    """The engine's Celery configuration on its own queue, with only the floor's tasks.

    `backend` (Redis) keeps the chord members' results, which a chord needs to join.
    """
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        broker_url=broker_url,
        queue_name=queue,
        worker_concurrency=concurrency,
    )
    app = create_app(settings)
    app.conf.update(include=[], beat_schedule={}, result_backend=backend, result_expires=600)
    options: dict[str, Any] = {"acks_late": True, "reject_on_worker_lost": True}
    app.task(name=NOOP_TASK, **options)(noop)
    app.task(name=CHORD_NOOP_TASK, ignore_result=False, **options)(noop)
    app.task(name=DONE_TASK, **options)(done)
    return app


def worker_arguments(queue: str, concurrency: int, hostname: str, log_level: str) -> list[str]:
    """What `wfe worker` passes to `worker_main` (see cli/main.py), for this queue."""
    return [
        "worker",
        f"--queues={queue}",
        f"--concurrency={concurrency}",
        "--pool=prefork",
        f"--hostname={hostname}",
        f"--loglevel={log_level}",
        "--without-mingle",
        "--without-gossip",
    ]


def main() -> None:
    queue = os.environ[ENV_QUEUE]
    concurrency = int(os.environ[ENV_CONCURRENCY])
    logs.configure("WARNING")
    app = create_floor_app(os.environ[ENV_BROKER], queue, concurrency, os.environ[ENV_MARKER])
    app.worker_main(worker_arguments(queue, concurrency, f"{queue}@%h", "WARNING"))


if __name__ == "__main__":
    main()
