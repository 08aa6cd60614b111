"""A WebSocket client that stops reading costs the gateway no memory, then gets every event.

The gateway runs in a process of its own here, so its memory is its alone to measure. What
the client has not read must not hide elsewhere on the way: its kernel may hold only 64 KiB
(left alone, Linux grows a local socket's buffer to tens of MB), and the lines are random,
as the socket's compression would shrink a repeated one to nothing. A gateway that queued
what the server sends grows by about 35 MiB here; this one by about 5 (the gRPC window).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine import events
from service.server import RunningServer
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import NewTenant, server_settings
from tests.execution_helpers import eventually
from tests.gateway.test_websocket import following

ROOT = Path(__file__).parents[2]
LAUNCH = """
import sys, uvicorn
from gateway import create_app
uvicorn.run(create_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
LOAD = 4_000
LINE_BYTES = 7_500  # as 10,000 characters that do not compress: 40 MB of events in all
BATCH = 100
IDLE_SECONDS = 10.0
GROWTH_LIMIT = 12 * 2**20
RECEIVE_BUFFER = 2**16


@dataclass
class GatewayProcess:
    url: str
    pid: int

    def rss(self) -> int:
        """The process's resident memory, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
async def gateway_process(server: RunningServer) -> AsyncIterator[GatewayProcess]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCH, str(port), f"127.0.0.1:{server.port}", cwd=ROOT
    )
    try:
        await eventually(lambda: listening(port), "the gateway listening", patience=30)
        yield GatewayProcess(f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        await process.wait()


def line(number: int) -> str:
    """A log line the socket's compression (permessage-deflate) cannot shrink."""
    return f"{number} {secrets.token_urlsafe(LINE_BYTES)}"


async def write(database: TenantDatabase, tenant: str, first: int) -> list[int]:
    """A batch of log events of execution `load`; their ids."""
    async with database.transaction(TenantId(tenant)) as session:
        rows = [
            events.record(
                session,
                "workflow_execution_log",
                {"event": "workflow_execution_log", "step_id": "s", "message": line(n)},
                execution_id="load",
            )
            for n in range(first, first + BATCH)
        ]
        await session.flush()
        return [row.id for row in rows]


@pytest.mark.slow
async def test_a_socket_that_reads_nothing_keeps_the_gateway_bounded_then_gets_every_event(
    gateway_process: GatewayProcess,
    server: RunningServer,
    database: TenantDatabase,
    new_tenant: NewTenant,
) -> None:
    """It reads nothing while 40 MB of events are written and for a while after: the
    gateway's memory stays flat (it reads the next event from the server only once the
    last one has gone out), the server holds at most one stream buffer for it (the rest
    waits in the log), and the client then receives every event once, in order."""
    tenant = await new_tenant("enterprise")
    topics = ["execution:load"]
    async with following(gateway_process.url, tenant, topics, None, None, RECEIVE_BUFFER) as client:
        await client.heartbeat()
        warm = await write(database, tenant, -BATCH)  # every code path run once
        assert [m["event_id"] for m in await client.events(BATCH)] == warm
        baseline = peak = gateway_process.rss()
        buffered = 0
        began = time.monotonic()
        written: list[int] = []
        for first in range(0, LOAD, BATCH):
            written += await write(database, tenant, first)
            peak = max(peak, gateway_process.rss())
            buffered = max(buffered, server.hub.registry.buffered())
        while time.monotonic() - began < IDLE_SECONDS:  # the client still reads nothing
            peak = max(peak, gateway_process.rss())
            buffered = max(buffered, server.hub.registry.buffered())
            await asyncio.sleep(0.1)
        received = await client.events(LOAD)
    assert peak - baseline < GROWTH_LIMIT, f"grew {(peak - baseline) / 2**20:.1f} MiB"
    assert 0 < buffered <= server_settings().stream_buffer_events
    assert [m["event_id"] for m in received] == written
    assert received[-1]["message"].startswith(f"{LOAD - 1} ")
