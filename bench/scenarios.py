"""The system side of each comparison: real StartExecution calls, real workers, real rows.

Completion is read from the database (one query per 100 ms, inside a transaction
that is rolled back, so polling adds no commit), and times come from the rows the
workers wrote: `completed_at` of the last execution, `started_at` of a first step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from grpc import aio

from bench.floors import CLIENT_OPTIONS, unary_latencies
from bench.harness import BenchTenant, Stack
from tests.execution_helpers import http, step, struct, three_steps, workflow
from wfe.v1 import execution_pb2, execution_pb2_grpc

START_METHOD = "/wfe.v1.ExecutionService/StartExecution"
UNLIMITED = 1_000_000


def start_request(tenant: BenchTenant) -> bytes:
    request = execution_pb2.StartExecutionRequest(
        workflow_id=tenant.workflow_id, input=struct({"name": "bench"})
    )
    return bytes(request.SerializeToString())


async def start_all(stack: Stack, tenant: BenchTenant, count: int, clients: int = 16) -> list[str]:
    """Start `count` executions from `clients` concurrent callers; their ids."""
    ids: list[str] = []
    remaining = iter(range(count))
    async with aio.insecure_channel(stack.server_target, options=CLIENT_OPTIONS) as channel:
        stub = execution_pb2_grpc.ExecutionServiceStub(channel)
        request = execution_pb2.StartExecutionRequest(
            workflow_id=tenant.workflow_id, input=struct({"name": "bench"})
        )

        async def caller() -> None:
            for _ in remaining:
                answer = await stub.StartExecution(request, metadata=tenant.metadata)
                ids.append(answer.execution.id)

        await asyncio.gather(*(caller() for _ in range(clients)))
    return ids


async def throughput_tenant(stack: Stack) -> BenchTenant:
    """A tenant for (a): `three_steps()`, no concurrency limit in the way."""
    return await stack.tenant(three_steps(), max_concurrent_executions=UNLIMITED)


@dataclass(frozen=True)
class Throughput:
    executions: int
    steps: int
    seconds: float
    starts_seconds: float
    commits: int

    @property
    def rate(self) -> float:
        return self.steps / self.seconds


async def steps_per_second(
    stack: Stack, executions: int, *, count_commits: bool, tenant: BenchTenant | None = None
) -> Throughput:
    """(a) and (c): `executions` 3-step no-op workflows, first StartExecution to last completion.

    With `count_commits`, the database's commits are read just before the first start
    and after the last completion, so they cover the starts and every step. `tenant`
    (default: a new one) must run `three_steps()` without a concurrency limit.
    """
    tenant = tenant or await throughput_tenant(stack)
    before = await stack.commits() if count_commits else 0
    began = time.time()
    started = 0.0

    async def starts() -> None:
        nonlocal started
        await start_all(stack, tenant, executions)
        started = time.time() - began

    await asyncio.gather(starts(), stack.observer.wait(tenant.id, executions, patience=300.0))
    finished = (await stack.observer.last_completion(tenant.id)).timestamp()
    await stack.observer.release()
    commits = await stack.commits() - before if count_commits else 0
    return Throughput(executions, 3 * executions, finished - began, started, commits)


async def start_latencies(stack: Stack, *, clients: int, calls: int) -> list[float]:
    """(b): StartExecution seconds per call, `clients` concurrent callers, `calls` each.

    The tenant has no concurrency or daily limit in the way, so every start is admitted
    and its steps published; the workers run them meanwhile, as they would in service.
    """
    tenant = await stack.tenant(
        three_steps(), max_concurrent_executions=UNLIMITED, max_executions_per_day=None
    )
    latencies = await unary_latencies(
        stack.server_target,
        START_METHOD,
        start_request(tenant),
        tenant.metadata,
        clients=clients,
        calls=calls,
    )
    await stack.observer.drain()
    return latencies


def slow_steps(stack: Stack) -> dict[str, Any]:
    """input -> call (an HTTP step answered after 50 ms) -> output: the heavy tenant's work."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http("call", "done", stack.effects_url(sleep=0.05), name="Call"),
        step("done", "output", name="Done", config={"values": {"ok": True}}),
    )


def _started_at(steps: dict[str, Any], step_id: str) -> float:
    for item in steps["step_list"]:
        if item["id"] == step_id and item.get("started_at"):
            return datetime.fromisoformat(item["started_at"].replace("Z", "+00:00")).timestamp()
    raise RuntimeError(f"step {step_id!r} has no start time")


@dataclass(frozen=True)
class Fairness:
    """Per light execution: call to first step, and the StartExecution call's own share."""

    latencies: list[float]
    start_calls: list[float]
    saturated: bool = True
    heavy_backlog_at_end: int = 0


async def first_step_latencies(
    stack: Stack, light: BenchTenant, count: int, spacing: float
) -> tuple[Fairness, float]:
    """Seconds from each StartExecution call to its first step's `started_at`; last start."""
    calls: list[tuple[str, float, float]] = []
    async with aio.insecure_channel(stack.server_target, options=CLIENT_OPTIONS) as channel:
        await channel.channel_ready()  # connection set-up is not the engine's latency
        stub = execution_pb2_grpc.ExecutionServiceStub(channel)
        request = execution_pb2.StartExecutionRequest(
            workflow_id=light.workflow_id, input=struct({"name": "light"})
        )
        for _ in range(count):
            paced = time.monotonic()
            called = time.time()
            answer = await stub.StartExecution(request, metadata=light.metadata)
            calls.append((answer.execution.id, called, time.monotonic() - paced))
            await asyncio.sleep(max(spacing - (time.monotonic() - paced), 0.0))
    await stack.observer.wait(light.id, count, patience=300.0)
    steps = await stack.observer.steps([execution_id for execution_id, _, _ in calls])
    first = [_started_at(steps[i], "input") for i, _, _ in calls]
    await stack.observer.release()
    latencies = [started - called for (_, called, _), started in zip(calls, first, strict=True)]
    return Fairness(latencies, [spent for _, _, spent in calls]), max(first)


async def light_alone(stack: Stack, count: int, spacing: float) -> Fairness:
    """(d) floor: the light tenant's start-to-first-step with nothing else running."""
    light = await stack.tenant(three_steps())
    measured, _ = await first_step_latencies(stack, light, count, spacing)
    return measured


async def light_under_load(stack: Stack, count: int, spacing: float, heavy: int) -> Fairness:
    """(d): the same while a heavy tenant's flood of slow executions fills the workers.

    The flood is started (and its first steps queued) before the light tenant's first
    start, and is checked to outlast the light tenant's last first step.
    """
    light = await stack.tenant(three_steps())
    flood = await stack.tenant(slow_steps(stack), max_concurrent_executions=UNLIMITED)
    await start_all(stack, flood, heavy)
    measured, last_first_step = await first_step_latencies(stack, light, count, spacing)
    done, _ = await stack.observer.outcome(flood.id)
    await stack.observer.drain(patience=600.0)
    heavy_finished = (await stack.observer.last_completion(flood.id)).timestamp()
    await stack.observer.release()
    return replace(
        measured, saturated=heavy_finished > last_first_step, heavy_backlog_at_end=heavy - done
    )


async def warm_up(stack: Stack, executions: int) -> None:
    """Fill pools and import paths in server and worker children before anything is timed."""
    plain = await stack.tenant(three_steps(), max_concurrent_executions=UNLIMITED)
    slow = await stack.tenant(slow_steps(stack), max_concurrent_executions=UNLIMITED)
    await asyncio.gather(start_all(stack, plain, executions), start_all(stack, slow, 8))
    await stack.observer.wait(plain.id, executions, patience=180.0)
    await stack.observer.wait(slow.id, 8, patience=180.0)
    await stack.observer.drain()


def summary(values: Sequence[float]) -> str:
    ordered = sorted(values)
    low, middle, high = (ordered[i] * 1000 for i in (0, len(ordered) // 2, -1))
    return f"min {low:.0f} / median {middle:.0f} / max {high:.0f} ms"
