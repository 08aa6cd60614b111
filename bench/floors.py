"""The client side of the floors, and the unary-latency client both sides of (b) and (b16) share.

Celery floor: N chains of three no-op tasks on the floor worker, timed from the
first send to the last task's finish (which the task itself records in Redis).
gRPC floor: the same 16-client loop as StartExecution, against the no-op server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from celery import chain, chord
from grpc import aio

from bench import floor_app, noop_server
from bench.harness import Metadata, Stack

CLIENT_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
Call = tuple[bytes, Metadata]
"""One client's serialised request and the metadata it sends with it."""


@dataclass(frozen=True)
class Chains:
    """The floor of (a) and (a'): tasks run, seconds from first send to last finish, and the CPU."""

    tasks: int
    seconds: float
    cpu_seconds: float
    """The floor worker's and its children's, from before the first send to the end."""

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds


async def celery_chain_rate(stack: Stack, chains: int, patience: float = 300.0) -> Chains:
    """`chains` chains of three no-op tasks, sent at once, until the last one finished."""
    app = stack.floor

    def send(key: str) -> None:
        for _ in range(chains):
            chain(
                app.signature(floor_app.NOOP_TASK, immutable=True),
                app.signature(floor_app.NOOP_TASK, immutable=True),
                app.signature(floor_app.DONE_TASK, args=(key,), immutable=True),
            ).apply_async()

    seconds, cpu_seconds = await _timed(stack, send, chains, patience)
    return Chains(3 * chains, seconds, cpu_seconds)


async def celery_chord_rate(
    stack: Stack, chords: int, width: int, patience: float = 300.0
) -> Chains:
    """`chords` chords of `width` no-op tasks joined by a callback, sent at once, until the
    last callback finished (its `tasks` counts the callbacks: chords completed)."""
    app = stack.floor

    def send(key: str) -> None:
        for _ in range(chords):
            chord(
                [app.signature(floor_app.CHORD_NOOP_TASK, immutable=True) for _ in range(width)],
                app.signature(floor_app.DONE_TASK, args=(key,), immutable=True),
            ).apply_async()

    seconds, cpu_seconds = await _timed(stack, send, chords, patience)
    return Chains(chords, seconds, cpu_seconds)


async def _timed(
    stack: Stack, send: Callable[[str], None], finishes: int, patience: float
) -> tuple[float, float]:
    """Seconds from `send(key)` to the last of `finishes` `done(key)` tasks, and the floor
    worker's CPU seconds meanwhile."""
    key = f"{stack.floor_queue}:mark-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(stack.marker_url)
    try:
        cpu_before = stack.floor_cpu()
        began = time.time()
        await asyncio.to_thread(send, key)
        ends = time.monotonic() + patience
        while int(await client.get(f"{key}:count") or 0) < finishes:
            if time.monotonic() > ends:
                raise TimeoutError(f"the Celery floor finished fewer than {finishes} batches")
            await asyncio.sleep(0.1)
        cpu_seconds = stack.floor_cpu() - cpu_before
        finished = max(float(t) for t in await client.lrange(f"{key}:times", 0, -1))
        await client.delete(f"{key}:count", f"{key}:times")
    finally:
        await client.aclose()
    return finished - began, cpu_seconds


async def unary_latencies(
    target: str, method: str, clients: Sequence[Call], *, calls: int, warmup: int = 2
) -> list[float]:
    """Seconds per call of one coroutine per client, each on its own connection, `calls` each.

    Each client sends its request pre-serialised so both sides of the comparison pay the
    same client cost; `warmup` calls per client (connection set-up, caches) are not timed.
    """
    channels = [aio.insecure_channel(target, options=CLIENT_OPTIONS) for _ in clients]
    try:
        stubs = [ch.unary_unary(method) for ch in channels]

        async def client(stub: Any, call: Call, timed: int) -> list[float]:
            request, metadata = call
            spent = []
            for _ in range(timed):
                began = time.perf_counter()
                await stub(request, metadata=metadata)
                spent.append(time.perf_counter() - began)
            return spent

        pairs = list(zip(stubs, clients, strict=True))
        await asyncio.gather(*(client(stub, call, warmup) for stub, call in pairs))
        results = await asyncio.gather(*(client(stub, call, calls) for stub, call in pairs))
    finally:
        for ch in channels:
            await ch.close()
    return [value for spent in results for value in spent]


async def noop_latencies(stack: Stack, clients: Sequence[Call], *, calls: int) -> list[float]:
    """(b) floor: the clients' StartExecution requests, answered by the no-op server."""
    return await unary_latencies(stack.noop_target, noop_server.METHOD, clients, calls=calls)
