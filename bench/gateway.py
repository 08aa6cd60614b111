"""(h) and (i): what the REST/WebSocket gateway adds over calling `wfe serve` directly.

(h) One client reads one finished execution back to back for `seconds`: through a
`wfe gateway` process with `GET /api/executions/{id}` (httpx, one HTTP/1.1 keep-alive
connection), and directly with `ExecutionService.GetExecution` over grpc.aio
(`bench.hostile.reads`). The ratio is the gateway's p99 over the direct one's.

(i) The (f) machinery (`bench.streams.system_delivery`: the event writer's steady,
stamped events, the subscriber processes) with the streams as the gateway's WebSockets
(`/api/workflows/ws`, credentials on the upgrade's headers, one `subscribe` message of
the same topic from `after_event_id` 0), beside the same number of gRPC Subscribe
streams: the ratio is the WebSockets' commit-to-delivery p99 over the streams'.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from dataclasses import dataclass
from functools import partial

import httpx

from bench import hostile, streams
from bench.harness import BenchTenant, Stack
from bench.hostile import MAX_CALLS
from bench.report import Metric
from bench.scenarios import start_all
from bench.streams import Delivery, StreamPlan
from tests.execution_helpers import three_steps


def metrics(plan: StreamPlan) -> dict[str, Metric]:
    return {
        "h": Metric(
            "h", "GetExecution p99, via the gateway's REST ÷ direct gRPC", "ms", "ms", 2.0, False
        ),
        "i": Metric(
            "i",
            f"{plan.subscribers} subscribers @{plan.rate:g} events/s, commit-to-delivery p99, "
            "WebSocket ÷ gRPC stream",
            "ms",
            "ms",
            1.5,
            False,
        ),
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Gateway:
    url: str

    @property
    def socket_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/api/workflows/ws"


async def start_gateway(stack: Stack, patience: float = 60.0) -> Gateway:
    """A `wfe gateway` process in front of the stack's server, once it answers HTTP."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env["PYTHONUNBUFFERED"] = "1"
    argv = [
        "-m",
        "cli.main",
        "gateway",
        "--address",
        f"127.0.0.1:{port}",
        "--target",
        stack.server_target,
    ]
    log = stack.spawned.start("gateway", argv, env)
    process = stack.spawned.running[-1]
    url = f"http://127.0.0.1:{port}"
    ends = time.monotonic() + patience
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < ends:
            try:
                await client.get(url + "/api/executions/none")
                return Gateway(url)
            except httpx.TransportError:
                if process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
    tail = log.read_bytes()[-2000:].decode(errors="replace")
    raise RuntimeError(f"the gateway did not answer\n{tail}")


async def rest_reads(
    gateway: Gateway, reader: BenchTenant, execution_id: str, seconds: float
) -> list[float]:
    """Seconds per `GET /api/executions/{id}`, one keep-alive client back to back."""
    headers = dict(reader.metadata)
    path = f"/api/executions/{execution_id}"
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=headers, limits=limits, timeout=30
    ) as client:
        (await client.get(path)).raise_for_status()  # connection set-up is not timed
        spent: list[float] = []
        ends = time.monotonic() + seconds
        while time.monotonic() < ends and len(spent) < MAX_CALLS:
            began = time.perf_counter()
            answer = await client.get(path)
            spent.append(time.perf_counter() - began)
            answer.raise_for_status()
    return spent


@dataclass(frozen=True)
class Reader:
    tenant: BenchTenant
    execution_id: str


async def reader(stack: Stack) -> Reader:
    """A tenant with one finished execution to read."""
    tenant = await stack.tenant(three_steps())
    [execution_id] = await start_all(stack, tenant, 1, clients=1)
    await stack.observer.wait(tenant.id, 1, patience=60.0)
    await stack.observer.release()
    return Reader(tenant, execution_id)


async def gets(
    stack: Stack, gateway: Gateway, read: Reader, seconds: float, system_first: bool
) -> tuple[list[float], list[float]]:
    """(direct, via the gateway) latencies, in the round's order."""
    direct = partial(hostile.reads, stack, read.tenant, read.execution_id, seconds)
    via = partial(rest_reads, gateway, read.tenant, read.execution_id, seconds)
    if system_first:
        through = await via()
        return await direct(), through
    first = await direct()
    return first, await via()


async def deliveries(
    stack: Stack, gateway: Gateway, plan: StreamPlan, system_first: bool
) -> tuple[Delivery, Delivery]:
    """(gRPC streams, WebSockets) deliveries, in the round's order."""
    if system_first:
        sockets = await streams.system_delivery(stack, plan, gateway.socket_url)
        return await streams.system_delivery(stack, plan), sockets
    grpc_side = await streams.system_delivery(stack, plan)
    return grpc_side, await streams.system_delivery(stack, plan, gateway.socket_url)
