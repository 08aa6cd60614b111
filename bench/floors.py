"""The client side of the floors, and the unary-latency client both sides of (b) share.

Celery floor: N chains of three no-op tasks on the floor worker, timed from the
first send to the last task's finish (which the task itself records in Redis).
gRPC floor: the same 16-client loop as StartExecution, against the no-op server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from celery import chain
from grpc import aio

from bench import floor_app, noop_server
from bench.harness import Metadata, Stack

CLIENT_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


async def celery_chain_rate(stack: Stack, chains: int, patience: float = 300.0) -> float:
    """Completed no-op tasks per second for `chains` chains of three, sent at once."""
    key = f"{stack.floor_queue}:mark-{uuid.uuid4().hex[:8]}"
    app = stack.floor

    def send() -> None:
        for _ in range(chains):
            chain(
                app.signature(floor_app.NOOP_TASK, immutable=True),
                app.signature(floor_app.NOOP_TASK, immutable=True),
                app.signature(floor_app.DONE_TASK, args=(key,), immutable=True),
            ).apply_async()

    client = aioredis.Redis.from_url(stack.marker_url)
    try:
        began = time.time()
        await asyncio.to_thread(send)
        ends = time.monotonic() + patience
        while int(await client.get(f"{key}:count") or 0) < chains:
            if time.monotonic() > ends:
                raise TimeoutError(f"the Celery floor finished too few of {chains} chains")
            await asyncio.sleep(0.1)
        finished = max(float(t) for t in await client.lrange(f"{key}:times", 0, -1))
        await client.delete(f"{key}:count", f"{key}:times")
    finally:
        await client.aclose()
    return 3 * chains / (finished - began)


async def unary_latencies(
    target: str,
    method: str,
    request: bytes,
    metadata: Metadata,
    *,
    clients: int,
    calls: int,
    warmup: int = 2,
) -> list[float]:
    """Seconds per call of `clients` coroutines, each on its own connection, `calls` each.

    The request is sent pre-serialised so both sides of the comparison pay the same
    client cost; `warmup` calls per client (connection set-up, caches) are not timed.
    """
    channels = [aio.insecure_channel(target, options=CLIENT_OPTIONS) for _ in range(clients)]
    try:
        stubs = [ch.unary_unary(method) for ch in channels]

        async def client(stub: Any, timed: int) -> list[float]:
            spent = []
            for _ in range(timed):
                began = time.perf_counter()
                await stub(request, metadata=metadata)
                spent.append(time.perf_counter() - began)
            return spent

        await asyncio.gather(*(client(stub, warmup) for stub in stubs))
        results = await asyncio.gather(*(client(stub, calls) for stub in stubs))
    finally:
        for ch in channels:
            await ch.close()
    return [value for spent in results for value in spent]


async def noop_latencies(
    stack: Stack, request: bytes, metadata: Metadata, *, clients: int, calls: int
) -> list[float]:
    return await unary_latencies(
        stack.noop_target, noop_server.METHOD, request, metadata, clients=clients, calls=calls
    )
