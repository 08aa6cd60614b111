"""The system side of each comparison: real StartExecution calls, real workers, real rows.

Completion is read from the database (one query per 100 ms, inside a transaction
that is rolled back, so polling adds no commit), and times come from the rows the
workers wrote: `completed_at` of the last execution, `started_at` of a first step.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from grpc import aio

from bench import cpu, noop_tool
from bench.floors import CLIENT_OPTIONS, Call, unary_latencies
from bench.harness import BenchTenant, Stack
from tests.execution_helpers import http, step, struct, three_steps, transform, workflow
from wfe.v1 import execution_pb2, execution_pb2_grpc

START_METHOD = "/wfe.v1.ExecutionService/StartExecution"
UNLIMITED = 1_000_000


def start_request(tenant: BenchTenant) -> bytes:
    request = execution_pb2.StartExecutionRequest(
        workflow_id=tenant.workflow_id, input=struct({"name": "bench"})
    )
    return bytes(request.SerializeToString())


def start_call(tenant: BenchTenant) -> Call:
    """What one (b) or (b16) client sends: the tenant's start request and its metadata."""
    return start_request(tenant), tenant.metadata


async def start_tenants(stack: Stack, count: int) -> list[BenchTenant]:
    """(b): `count` tenants, each with `three_steps()` and no concurrency or daily limit."""
    document = three_steps()
    return [
        await stack.tenant(
            document, max_concurrent_executions=UNLIMITED, max_executions_per_day=None
        )
        for _ in range(count)
    ]


async def start_all(
    stack: Stack,
    tenant: BenchTenant,
    count: int,
    clients: int = 16,
    value: dict[str, Any] | None = None,
) -> list[str]:
    """Start `count` executions on `value` (default `{"name": "bench"}`) from `clients`
    concurrent callers; their ids."""
    ids: list[str] = []
    remaining = iter(range(count))
    async with aio.insecure_channel(stack.server_target, options=CLIENT_OPTIONS) as channel:
        stub = execution_pb2_grpc.ExecutionServiceStub(channel)
        request = execution_pb2.StartExecutionRequest(
            workflow_id=tenant.workflow_id, input=struct(value or {"name": "bench"})
        )

        async def caller() -> None:
            for _ in remaining:
                answer = await stub.StartExecution(request, metadata=tenant.metadata)
                ids.append(answer.execution.id)

        await asyncio.gather(*(caller() for _ in range(clients)))
    return ids


def dispatched_steps() -> dict[str, Any]:
    """input -> three `bench_noop` steps (dispatched, no wait) -> output: (a)'s workflow.

    Input and output steps always run inline; the three no-op tool steps are dispatched.
    """
    noop = {"tool": noop_tool.NAME, "arguments": {}}
    return workflow(
        step("input", "input", "noop1", name="Input"),
        step("noop1", "tool", "noop2", name="Noop 1", config=noop),
        step("noop2", "tool", "noop3", name="Noop 2", config=noop),
        step("noop3", "tool", "done", name="Noop 3", config=noop),
        step("done", "output", name="Done", config={"values": {"ok": True}}),
    )


async def throughput_tenant(stack: Stack, document: dict[str, Any] | None = None) -> BenchTenant:
    """A tenant for (a) or (a'): `document` (default `three_steps()`), no concurrency limit."""
    return await stack.tenant(document or three_steps(), max_concurrent_executions=UNLIMITED)


@dataclass(frozen=True)
class Throughput:
    executions: int
    steps: int
    """Three per execution: `three_steps()`'s all, or `dispatched_steps()`'s dispatched ones."""
    seconds: float
    starts_seconds: float
    commits: int
    cpu: cpu.Spent
    """The system's CPU from just before the first start to just after the last completion."""

    @property
    def rate(self) -> float:
        return self.steps / self.seconds


async def steps_per_second(
    stack: Stack, executions: int, *, count_commits: bool, tenant: BenchTenant | None = None
) -> Throughput:
    """(a) to (c'): `executions` workflows of 3 counted steps, first start to last completion.

    With `count_commits`, the database's commits are read just before the first start
    and after the last completion, so they cover the starts and every step. `tenant`
    (default: a new one with `three_steps()`) must have no concurrency limit. The CPU
    is read inside the commit readings, which wait for the statistics to settle.
    """
    tenant = tenant or await throughput_tenant(stack)
    before = await stack.commits() if count_commits else 0
    cpu_before = await stack.system_cpu()
    began = time.time()
    started = 0.0

    async def starts() -> None:
        nonlocal started
        await start_all(stack, tenant, executions)
        started = time.time() - began

    await asyncio.gather(starts(), stack.observer.wait(tenant.id, executions, patience=300.0))
    finished = (await stack.observer.last_completion(tenant.id)).timestamp()
    await stack.observer.release()
    spent = cpu.between(cpu_before, await stack.system_cpu())
    commits = await stack.commits() - before if count_commits else 0
    return Throughput(executions, 3 * executions, finished - began, started, commits, spent)


async def dispatched_per_second(stack: Stack, executions: int) -> Throughput:
    """(a) and (c): `steps_per_second` of `dispatched_steps()` on a new tenant, commits counted."""
    tenant = await throughput_tenant(stack, dispatched_steps())
    return await steps_per_second(stack, executions, count_commits=True, tenant=tenant)


async def start_latencies(stack: Stack, clients: Sequence[Call], *, calls: int) -> list[float]:
    """(b), (b16): StartExecution seconds per call, one caller per client, `calls` each.

    The tenants (`start_tenants`) have no concurrency or daily limit in the way, so every
    start is admitted and its steps published; the workers run them meanwhile, as they
    would in service, and are waited for before the next measurement.
    """
    latencies = await unary_latencies(stack.server_target, START_METHOD, clients, calls=calls)
    await stack.observer.drain()
    return latencies


FLOOD_CALL_SECONDS = 5.0
"""How long the heavy tenant's HTTP calls take in (d): long enough to fill the workers'
I/O slots and queue the rest, whatever the machine's speed."""


def slow_steps(stack: Stack, seconds: float = 0.05) -> dict[str, Any]:
    """input -> call (an HTTP step answered after `seconds`) -> output: a heavy tenant's work."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http("call", "done", stack.effects_url(sleep=seconds), name="Call"),
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
    flood = await stack.tenant(
        slow_steps(stack, FLOOD_CALL_SECONDS), max_concurrent_executions=UNLIMITED
    )
    started = await fill_backlog(stack, flood, heavy)
    measured, last_first_step = await first_step_latencies(stack, light, count, spacing)
    done, _ = await stack.observer.outcome(flood.id)
    await stack.observer.drain(patience=600.0)
    heavy_finished = (await stack.observer.last_completion(flood.id)).timestamp()
    await stack.observer.release()
    return replace(
        measured, saturated=heavy_finished > last_first_step, heavy_backlog_at_end=started - done
    )


FILL_ROUNDS = 5
"""Top-ups at most: each starts what the workers drained while the previous ones started."""


async def fill_backlog(stack: Stack, tenant: BenchTenant, backlog: int) -> int:
    """Start executions until `backlog` of them are unfinished; how many were started.

    The workers drain the flood while it is being started, so one batch of `backlog`
    starts leaves fewer than that waiting: the rest is started again, a few times at most.
    """
    started = 0
    for _ in range(FILL_ROUNDS):
        completed, failed = await stack.observer.outcome(tenant.id)
        short = backlog - (started - completed - failed)
        if short <= 0:
            break
        started += len(await start_all(stack, tenant, short))
    return started


async def warm_up(stack: Stack, executions: int) -> None:
    """Fill pools and import paths in server and worker children before anything is timed.

    The slow executions' calls overlap, as the runs' do, so each worker process opens the
    connections its steps in flight need now rather than inside a timed window.
    """
    plain = await throughput_tenant(stack)
    dispatched = await throughput_tenant(stack, dispatched_steps())
    slow = await stack.tenant(slow_steps(stack), max_concurrent_executions=UNLIMITED)
    await asyncio.gather(
        start_all(stack, plain, executions),
        start_all(stack, dispatched, executions),
        start_all(stack, slow, 2 * executions),
    )
    await stack.observer.wait(plain.id, executions, patience=180.0)
    await stack.observer.wait(dispatched.id, executions, patience=180.0)
    await stack.observer.wait(slow.id, 2 * executions, patience=180.0)
    await stack.observer.drain()


def summary(values: Sequence[float]) -> str:
    ordered = sorted(values)
    low, middle, high = (ordered[i] * 1000 for i in (0, len(ordered) // 2, -1))
    return f"min {low:.0f} / median {middle:.0f} / max {high:.0f} ms"


LONG_STEPS = 500


def long_steps(count: int = LONG_STEPS) -> dict[str, Any]:
    """input -> `count - 2` transforms, each reading the one before -> output: (e500)'s workflow.

    Every step runs inline, so what the engine does per step is all that is timed; each
    transform reads the previous output, so every step resolves a path into the context.
    """
    middle = [f"t{number}" for number in range(1, count - 1)]
    chain = ["input", *middle, "done"]
    steps = [step("input", "input", chain[1], name="Input")]
    for position, step_id in enumerate(middle, start=1):
        previous = "$.input.name" if position == 1 else f"$.{chain[position - 1]}.value"
        steps.append(transform(step_id, chain[position + 1], {"value": previous}))
    steps.append(step("done", "output", name="Done", config={"values": {"ok": True}}))
    return workflow(*steps)


def _completed_at(item: dict[str, Any]) -> float:
    return datetime.fromisoformat(item["completed_at"].replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Growth:
    """Per-step cost (seconds between consecutive completions) in a long execution's first
    and last tenth, each the median over `executions` runs' deciles."""

    first: float
    last: float
    executions: int
    seconds: float


async def long_execution_growth(stack: Stack, executions: int = 2) -> Growth:
    """(e500): run `executions` 500-step executions one after another; decile step costs.

    A step's cost is the time from the previous step's completion to its own, read from
    the seed's `steps` record; the median of each tenth keeps the one step in 64 whose
    gap includes a broker hop (an inline chain's budget) from weighing in.
    """
    tenant = await stack.tenant(long_steps(), max_concurrent_executions=UNLIMITED)
    began = time.monotonic()
    for number in range(executions):
        await start_all(stack, tenant, 1, clients=1)
        await stack.observer.wait(tenant.id, number + 1, patience=300.0)
    seconds = time.monotonic() - began
    firsts: list[float] = []
    lasts: list[float] = []
    for steps in await stack.observer.all_steps(tenant.id):
        done = [_completed_at(item) for item in steps["step_list"]]
        gaps = [later - earlier for earlier, later in itertools.pairwise(done)]
        tenth = max(len(gaps) // 10, 1)
        firsts.append(statistics.median(gaps[:tenth]))
        lasts.append(statistics.median(gaps[-tenth:]))
    await stack.observer.release()
    return Growth(statistics.median(firsts), statistics.median(lasts), executions, seconds)
