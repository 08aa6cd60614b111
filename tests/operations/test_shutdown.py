"""SIGTERM on a worker: what it still runs after the grace is given back, not left until
its lease runs out.

The lease here is a minute and there is no sweeper at all, so only the stopping worker's
hand-back can let the other worker finish the step within the test's patience. The signal
goes to the worker's main process alone, as from a container's init or Kubernetes: a
step on the I/O lane and a step in a Celery task (the lane turned off) are both handed
back; Celery's warm shutdown would wait for the task without end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import require, server_settings
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import broker_unavailable_reason, broker_url, wait_for_workers
from tests.execution_helpers import (
    active_workflow,
    eventually,
    http,
    start,
    step,
    wait_until,
    workflow,
)
from tests.fault_harness import create_tenant, log_tails, serve_process
from wfe.v1 import execution_pb2
from workers.app import create_app

pytestmark = [pytest.mark.postgres, pytest.mark.faults, pytest.mark.timeout(150)]

LEASE_SECONDS = 60


@pytest.mark.parametrize("io_steps", ["4", "0"], ids=["io_lane", "celery_task"])
async def test_a_worker_stopped_mid_step_hands_the_step_back_after_the_grace(
    postgres: ThrowawayDatabase, effects: Effects, tmp_path: Path, io_steps: str
) -> None:
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    slow_clocks = {
        "WFE_LEASE_SECONDS": str(LEASE_SECONDS),
        "WFE_DISPATCH_GRACE_SECONDS": str(LEASE_SECONDS),
        "WFE_SHUTDOWN_GRACE_SECONDS": "1",
        "WFE_WORKER_IO_STEPS": io_steps,
    }
    async with serve_process(postgres, effects, tmp_path, broker=url, extra_env=slow_clocks) as (
        _,
        channel,
        processes,
    ):
        queue = processes.env["WFE_QUEUE_NAME"]
        app = create_app(server_settings(broker_url=url, queue_name=queue))
        first = processes.worker(f"--name={queue}-first@%h")
        await asyncio.to_thread(wait_for_workers, app, [f"{queue}-first"])
        tenant = await create_tenant(postgres, "professional")
        gate = f"handback-{queue}"
        document = workflow(
            step("input", "input", "call", name="Input"),
            http("call", "done", effects.url(hold=gate), method="POST", name="Call"),
            step("done", "output", name="Done"),
        )
        workflow_id = await active_workflow(channel, tenant, document)
        execution = await start(channel, tenant, workflow_id, {})
        await eventually(lambda: effects.holding[gate] == 1, "the call under way", patience=30)

        processes.worker(f"--name={queue}-second@%h")
        await asyncio.to_thread(wait_for_workers, app, [f"{queue}-second"])
        os.kill(first.pid, signal.SIGTERM)
        await asyncio.to_thread(first.wait, 30)
        stopped_at = time.monotonic()
        effects.release(gate)

        finished = await wait_until(channel, tenant, execution.id, patience=LEASE_SECONDS / 2)
        took = time.monotonic() - stopped_at
        assert finished.status == execution_pb2.EXECUTION_STATUS_COMPLETED, log_tails(tmp_path)
        assert took < LEASE_SECONDS / 2, f"finished {took:.1f}s after the stop"
        assert effects.applied_count(execution.id, "call") == 1
        assert "handing the running steps back" in log_tails(tmp_path, lines=200)
