"""`wfe worker` on a broker that delivers every task twice (for the fault tests).

Run as `python -m tests.doubling_worker worker [options]`. Before the normal CLI
starts, it makes every step task this worker publishes (next steps, retries, the
sweeper's re-publishes) go out as two messages, and, when FAULTS_DELIVERY_LOG names
a file, appends one line per delivery that reaches the engine, so a test can see
that each duplicate really arrived. The prefork children inherit both patches.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from engine.dispatch import TaskRef
from engine.engine import AttemptKey, Claimed, Engine
from workers.publisher import CeleryPublisher

_publish = CeleryPublisher.publish
_begin_attempt = Engine.begin_attempt


def publish_twice(self: CeleryPublisher, refs: Sequence[TaskRef]) -> None:
    _publish(self, [ref for ref in refs for _ in range(2)])


async def recorded_begin_attempt(
    self: Engine, key: AttemptKey, task_id: str | None = None, *, io_lane: bool = False
) -> tuple[Claimed | None, list[TaskRef]]:
    record(key)
    return await _begin_attempt(self, key, task_id, io_lane=io_lane)


def record(key: AttemptKey) -> None:
    path = os.environ.get("FAULTS_DELIVERY_LOG")
    if path:
        # One short line per append: atomic across the pool's processes.
        with open(path, "a") as log:
            log.write(f"{key.execution_id} {key.step_id} {key.attempt}\n")


def install() -> None:
    CeleryPublisher.publish = publish_twice  # type: ignore[method-assign]
    Engine.begin_attempt = recorded_begin_attempt  # type: ignore[method-assign]


def main(argv: list[str]) -> Any:
    install()
    from cli.main import app

    return app(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
