"""Seed 004's `monitorWorkflowExecution`, run unchanged but for its base URL under Node.

`js/monitor.mjs` holds the seed's function; `js/monitor_runner.mjs` calls it as the seed's
usage example does and prints what its callbacks saw. The execution it watches waits in the
queue (the tenant may run one at a time, and another holds the slot) until the socket's
stream is open, so the monitor sees the execution from its start.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from grpc import aio

from tests.conftest import NewTenant, auth, token
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    executions,
    http,
    start,
    step,
    three_steps,
    wait_until,
    workflow,
)
from tests.gateway.conftest import Gateway
from wfe.v1 import execution_pb2

RUNNER = Path(__file__).parent / "js" / "monitor_runner.mjs"
NODE = shutil.which("node")


async def lines_of(process: asyncio.subprocess.Process, patience: float = 60.0) -> dict[str, Any]:
    """The runner's next JSON line."""
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), patience)
    assert line, "the runner ended early"
    record: dict[str, Any] = json.loads(line)
    return record


@pytest.mark.skipif(NODE is None, reason="node is not installed")
async def test_the_seeds_monitor_follows_an_execution_to_its_end_and_closes_with_1000(
    gateway: Gateway, channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("enterprise", {"max_concurrent_executions": 1})
    slow = workflow(
        step("input", "input", "slow", name="Input"),
        http("slow", "done", effects.url(sleep=60)),
        step("done", "output", name="Done", config={"values": {"ok": True}}),
    )
    blocker = await start(channel, tenant, await active_workflow(channel, tenant, slow))
    await wait_until(
        channel,
        tenant,
        blocker.id,
        frozenset({execution_pb2.EXECUTION_STATUS_IN_PROGRESS}),
        where=lambda e: e.current_step == "slow",
    )
    workflow_id = await active_workflow(channel, tenant, three_steps())
    queued = await start(channel, tenant, workflow_id, {"name": "Grace"})
    assert queued.status == execution_pb2.EXECUTION_STATUS_QUEUED
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        "--experimental-websocket",
        "--no-warnings",
        str(RUNNER),
        queued.id,
        workflow_id,
        token([tenant]),
        tenant,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "MONITOR_BASE_URL": gateway.url.replace("http://", "ws://", 1)},
    )
    try:
        assert await lines_of(process) == {"ready": True}
        await executions(channel).CancelExecution(
            execution_pb2.CancelExecutionRequest(execution_id=blocker.id), metadata=auth(tenant)
        )
        records = [await lines_of(process)]
        while "closed" not in records[-1]:
            records.append(await lines_of(process))
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert records[-1] == {"closed": 1000}
    calls = [r for r in records if "callback" in r]
    assert {c["data"]["execution_id"] for c in calls} == {queued.id}
    order = [c["callback"] for c in calls]
    first = {name: order.index(name) for name in ("onUpdate", "onStepCompleted", "onCompleted")}
    assert first["onUpdate"] < first["onStepCompleted"] < first["onCompleted"] == len(order) - 1
    assert [c["data"]["step_id"] for c in calls if c["callback"] == "onStepCompleted"] == [
        "input",
        "shape",
        "done",
    ]
    done = calls[-1]["data"]
    assert (done["event"], done["status"]) == ("workflow_execution_completed", "completed")
    page = [(r["ui"], r["args"]) for r in records if "ui" in r]
    assert page[-1] == ("showCompletionMessage", ["completed", {"greeting": "Grace"}])
    assert ("updateWorkflowDiagram", ["shape", "completed"]) in page
