"""(e) One server, two tenants: does an attacker's hostile traffic slow another tenant down?

Tenant B (light) reads one execution with GetExecution in a loop; its p99 is measured
alone, then while tenant A sends the attack corpus (`tests.attacks`) in a loop from
several clients. The attacker runs in a process of its own, as another tenant's client
would: sharing the reader's event loop would slow the reader's client, not the server.
Both loops are bounded in time and in calls, and stay on loopback.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event

import grpc
from grpc import aio

from bench.floors import CLIENT_OPTIONS
from bench.harness import BenchTenant, Metadata, Stack
from bench.scenarios import start_all
from tests.attacks import ATTACKS, Targets, page_token_of, pattern_workflow
from tests.execution_helpers import three_steps
from wfe.v1 import execution_pb2

GET_METHOD = "/wfe.v1.ExecutionService/GetExecution"
MAX_CALLS = 100_000
"""No loop makes more calls than this, whatever its time allows."""


@dataclass(frozen=True)
class UnderAttack:
    alone: list[float]
    attacked: list[float]
    attacks_sent: int
    attacks_by_code: dict[str, int]


async def reads(
    stack: Stack, victim: BenchTenant, execution_id: str, seconds: float
) -> list[float]:
    """Seconds per GetExecution call, one client calling back to back for `seconds`."""
    request = execution_pb2.GetExecutionRequest(execution_id=execution_id).SerializeToString()
    async with aio.insecure_channel(stack.server_target, options=CLIENT_OPTIONS) as channel:
        get = channel.unary_unary(GET_METHOD)
        await get(request, metadata=victim.metadata)  # connection set-up is not timed
        spent: list[float] = []
        ends = time.monotonic() + seconds
        while time.monotonic() < ends and len(spent) < MAX_CALLS:
            began = time.perf_counter()
            await get(request, metadata=victim.metadata, timeout=30)
            spent.append(time.perf_counter() - began)
    return spent


async def attack(
    target: str, requests: list[tuple[str, bytes]], metadata: Metadata, stop: Event
) -> dict[str, int]:
    """Send the corpus round and round until `stop`; the count of each answer's code."""
    codes: dict[str, int] = {}
    async with aio.insecure_channel(target, options=CLIENT_OPTIONS) as channel:
        calls = {method: channel.unary_unary(method) for method, _ in requests}
        sent = 0
        while not stop.is_set() and sent < MAX_CALLS:
            method, request = requests[sent % len(requests)]
            try:
                await calls[method](request, metadata=metadata, timeout=10)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
            codes[code] = codes.get(code, 0) + 1
            sent += 1
    return codes


def flood(
    target: str,
    requests: list[tuple[str, bytes]],
    metadata: Metadata,
    attackers: int,
    started: Event,
    stop: Event,
    answers: multiprocessing.Queue[dict[str, int]],
) -> None:
    """The attacker's process: `attackers` clients until `stop`, then the codes they got."""
    started.set()

    async def all_clients() -> dict[str, int]:
        counted = await asyncio.gather(
            *(attack(target, requests, metadata, stop) for _ in range(attackers))
        )
        total: dict[str, int] = {}
        for codes in counted:
            for code, count in codes.items():
                total[code] = total.get(code, 0) + count
        return total

    answers.put(asyncio.run(all_clients()))


async def other_tenant_under_attack(stack: Stack, seconds: float, attackers: int) -> UnderAttack:
    victim = await stack.tenant(three_steps())
    [execution_id] = await start_all(stack, victim, 1, clients=1)
    await stack.observer.wait(victim.id, 1, patience=60.0)
    await stack.observer.release()
    attacker = await stack.tenant(three_steps())
    lender = await stack.tenant(three_steps())
    targets = Targets(
        await pattern_workflow(stack.setup_channel, attacker.metadata),
        await page_token_of(stack.setup_channel, lender.metadata),
    )
    # Built once: the attacker's cost of serialising 5 MB is not the server's.
    requests = [(a.method, a.build(targets).SerializeToString()) for a in ATTACKS]

    alone = await reads(stack, victim, execution_id, seconds)
    spawn = multiprocessing.get_context("spawn")
    started, stop, answers = spawn.Event(), spawn.Event(), spawn.Queue()
    attacker_process = spawn.Process(
        target=flood,
        args=(stack.server_target, requests, attacker.metadata, attackers, started, stop, answers),
        daemon=True,
    )
    attacker_process.start()
    try:
        if not await asyncio.to_thread(started.wait, 60):
            raise RuntimeError("the attacker's process did not start")
        attacked = await reads(stack, victim, execution_id, seconds)
    finally:
        stop.set()
        by_code: dict[str, int] = await asyncio.to_thread(answers.get, timeout=60)
        await asyncio.to_thread(attacker_process.join, 30)
    return UnderAttack(alone, attacked, sum(by_code.values()), by_code)
