"""`wfe worker` that notes every step-task delivery reaching the engine (for the fault tests).

Run as `python -m tests.operations.recording_worker worker [options]`. When
OPERATIONS_DELIVERY_LOG names a file, each delivery appends one line: the attempt it
names, the broker's task id (a message the broker hands out again keeps its id; one the
sweeper publishes again gets a new one), the process and the wall-clock time. The
prefork children inherit the patch; nothing else about the worker changes.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.dispatch import TaskRef
from engine.engine import AttemptKey, Claimed, Engine

LOG_VARIABLE = "OPERATIONS_DELIVERY_LOG"

_begin_attempt = Engine.begin_attempt


@dataclass(frozen=True)
class Delivery:
    execution_id: str
    step_id: str
    attempt: int
    task_id: str
    pid: int
    at: float


async def recorded_begin_attempt(
    self: Engine, key: AttemptKey, task_id: str | None = None, *, io_lane: bool = False
) -> tuple[Claimed | None, list[TaskRef]]:
    record(key, task_id)
    return await _begin_attempt(self, key, task_id, io_lane=io_lane)


def record(key: AttemptKey, task_id: str | None) -> None:
    path = os.environ.get(LOG_VARIABLE)
    if path:
        line = (
            f"{key.execution_id} {key.step_id} {key.attempt} {task_id or '-'} "
            f"{os.getpid()} {time.time():.6f}\n"
        )
        with open(path, "a") as log:  # one short append: atomic across the pool's processes
            log.write(line)


def read_deliveries(path: Path) -> list[Delivery]:
    if not path.exists():
        return []
    deliveries = []
    for line in path.read_text().splitlines():
        execution_id, step_id, attempt, task_id, pid, at = line.split(" ")
        deliveries.append(
            Delivery(execution_id, step_id, int(attempt), task_id, int(pid), float(at))
        )
    return deliveries


def main(argv: list[str]) -> Any:
    Engine.begin_attempt = recorded_begin_attempt  # type: ignore[method-assign]
    from cli.main import app

    return app(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
