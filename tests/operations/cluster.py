"""What a Compose file describes, as local processes: N `wfe serve`, M `wfe worker`, one
`wfe beat` and `wfe gateway`s, on one PostgreSQL database and one broker queue.

Every process of a cluster shares one settings object, hence one queue name: a task a
server publishes is one any worker may take. Each process logs to `<name>.log` in the
cluster's directory, and readiness is awaited by its event: a gRPC channel ready, a worker
answering a ping, a gateway answering HTTP. A failure says what did not come up; `logs()`
(the tails of every log) says why. Whatever was started is stopped on the way out, failure
or not, and what the run left on the broker (its queue, a killed worker's unacknowledged
messages) is dropped.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from grpc import aio

from foundation.settings import Settings
from tests.conftest import AUDIENCE, ISSUER, SECRET
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import Processes, purge_queue, wait_for_workers
from tests.fault_harness import engine_env, forget_unacked, free_port, log_tails, stack_settings
from workers.app import create_app

READY_PATIENCE = 90.0
"""How long a process may take to come up on a loaded machine (the usual is a few seconds)."""


@dataclass
class Server:
    """A `wfe serve` process and a channel to it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    channel: aio.Channel

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Gateway:
    """A `wfe gateway` process and its base URL."""

    name: str
    process: subprocess.Popen[bytes]
    url: str


@dataclass
class Cluster:
    """The processes of one run, by kind, in the order started, dead or alive."""

    settings: Settings
    env: dict[str, str]
    processes: Processes
    log_dir: Path
    servers: list[Server] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    beats: list[subprocess.Popen[bytes]] = field(default_factory=list)
    gateways: list[Gateway] = field(default_factory=list)

    def logs(self) -> str:
        return log_tails(self.log_dir)

    def launch(
        self, name: str, command: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`wfe <command> <args>` logging to `<name>.log`, stopped with the cluster."""
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli.main", command, *args],
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.running.append(process)
        return process

    def server(self, name: str) -> Server:
        """A `wfe serve` on a free port; `ready(server)` waits for it to answer."""
        port = free_port()
        env = dict(
            self.env,
            WFE_JWT_SECRET=SECRET,
            WFE_JWT_ISSUER=ISSUER,
            WFE_JWT_AUDIENCE=AUDIENCE,
            WFE_LISTEN_ADDRESS=f"127.0.0.1:{port}",
            WFE_SHUTDOWN_GRACE_SECONDS="1",
        )
        process = self.launch(name, "serve", env=env)
        server = Server(name, process, port, aio.insecure_channel(f"127.0.0.1:{port}"))
        self.servers.append(server)
        return server

    def worker_name(self, name: str) -> str:
        """The node name prefix of a worker: unique to this run, as the broker is shared."""
        return f"{self.settings.queue_name}-{name}"

    def worker(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        process = self.launch(name, "worker", f"--name={self.worker_name(name)}@%h", *args)
        self.workers.append(process)
        return process

    def beat(self) -> subprocess.Popen[bytes]:
        process = self.launch("beat", "beat")
        self.beats.append(process)
        return process

    def gateway(self, name: str, target: Server) -> Gateway:
        port = free_port()
        address = f"127.0.0.1:{port}"
        process = self.launch(name, "gateway", "--address", address, "--target", target.address)
        gateway = Gateway(name, process, f"http://{address}")
        self.gateways.append(gateway)
        return gateway

    async def ready(self, server: Server) -> None:
        """Until the server's channel is ready (it listens and answers)."""
        ends = time.monotonic() + READY_PATIENCE
        while True:
            try:
                await asyncio.wait_for(server.channel.channel_ready(), 1.0)
                return
            except TimeoutError:
                if server.process.poll() is not None or time.monotonic() > ends:
                    raise AssertionError(f"{server.name} did not come up") from None

    async def workers_ready(self, names: list[str]) -> None:
        """Until every named worker answers a ping on the broker."""
        app = create_app(self.settings)
        try:
            await asyncio.to_thread(
                wait_for_workers, app, [self.worker_name(n) for n in names], READY_PATIENCE
            )
        except RuntimeError as late:
            raise AssertionError(str(late)) from None
        finally:
            app.close()

    async def gateway_ready(self, gateway: Gateway) -> None:
        """Until the gateway answers HTTP (its API description needs no server call)."""
        ends = time.monotonic() + READY_PATIENCE
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                with suppress(httpx.TransportError):
                    answer = await client.get(f"{gateway.url}/api/openapi.json")
                    if answer.status_code == 200:
                        return
                if gateway.process.poll() is not None or time.monotonic() > ends:
                    raise AssertionError(f"{gateway.name} did not come up")
                await asyncio.sleep(0.1)


@asynccontextmanager
async def cluster(
    postgres: ThrowawayDatabase,
    effects: Effects,
    directory: Path,
    *,
    broker: str,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Cluster]:
    """An empty cluster on a queue of its own; the test starts the processes it describes.

    `extra_env` is what the Compose file would set for every process beyond the test
    settings (pool sizes, say)."""
    settings = stack_settings(broker, effects)
    env = engine_env(settings, postgres.service_url, directory)
    env.update(extra_env or {})
    running = Cluster(settings, env, Processes(env, directory), directory)
    try:
        yield running
    finally:
        for server in running.servers:
            await server.channel.close()
        running.processes.stop_all()
        with suppress(redis.RedisError):
            purge_queue(settings.broker_url, settings.queue_name)
            forget_unacked(settings.broker_url, settings.queue_name)
