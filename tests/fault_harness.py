"""A whole engine to break on purpose: real worker processes, a real broker, PostgreSQL.

`engine_stack` runs what production runs (a gRPC server, `wfe worker`, `wfe beat`)
on a queue of its own; `RedisServer` is a private broker a test may crash and bring
back without touching the shared one; `serve_process` is `wfe serve` as a process a
test may SIGKILL. The checks at the end (`assert_settled`) are the promises the
engine makes whatever failed: every execution ends, every external effect is applied
once, and nothing is left running or queued for a finished execution.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from grpc import aio
from sqlalchemy import func, select

from engine.dispatch import Publisher, TaskRef
from foundation.settings import Settings
from persistence.models import Dispatch, Execution, StepAttempt
from service.server import RunningServer, start_server
from service.tenants import service as tenants
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, server_settings
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import Processes, purge_queue, unique_queue, worker_environment
from tests.execution_helpers import TERMINAL, Status, get
from wfe.v1 import execution_pb2
from workers.app import io_queue

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED


def free_port() -> int:
    """A port nothing listens on (the OS's pick, released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tails(directory: Path, lines: int = 40) -> str:
    """The last lines of every process log in `directory`, for failure messages."""
    parts = []
    for path in sorted(directory.glob("*.log")):
        text = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {path.name} ---\n" + "\n".join(text))
    return "\n".join(parts)


# --- a private Redis a test may crash -----------------------------------------------------


@dataclass
class RedisServer:
    """`redis-server` on a port of its own, with no persistence: a crash loses every message."""

    port: int
    log_dir: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        with open(self.log_dir / f"redis-{self.starts}.log", "wb") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        ends = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > ends:
                    raise RuntimeError(
                        f"redis-server did not start on {self.port}:\n{log_tails(self.log_dir)}"
                    ) from None
                time.sleep(0.05)
            finally:
                client.close()

    def crash(self) -> None:
        """SIGKILL: no shutdown save, every queued and unacknowledged message is gone."""
        if self.process is not None and self.process.poll() is None:
            Processes.kill(self.process)
        self.process = None


@contextmanager
def own_redis(log_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), log_dir)
    server.start()
    try:
        yield server
    finally:
        server.crash()


# --- publishers that deliver every task twice ---------------------------------------------


class DoublingPublisher:
    """Sends every ref twice, as two separate messages: a broker that redelivers."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.sent = 0

    def publish(self, refs: Sequence[TaskRef]) -> None:
        doubled = [ref for ref in refs for _ in range(2)]
        self.sent += len(doubled)
        self.inner.publish(doubled)


def read_deliveries(path: Path) -> Counter[tuple[str, str, int]]:
    """(execution, step, attempt) -> how many task deliveries reached the engine."""
    counted: Counter[tuple[str, str, int]] = Counter()
    if not path.exists():
        return counted
    for line in path.read_text().splitlines():
        execution_id, step_id, attempt = line.split(" ")
        counted[(execution_id, step_id, int(attempt))] += 1
    return counted


# --- the stack ----------------------------------------------------------------------------


@dataclass
class Stack:
    """A running engine: server channel, its database, its worker/beat processes."""

    settings: Settings
    env: dict[str, str]
    processes: Processes
    database: TenantDatabase
    channel: aio.Channel
    log_dir: Path
    worker_module: str | None = None
    workers: dict[subprocess.Popen[bytes], tuple[str, ...]] = field(default_factory=dict)
    replaced: int = 0

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        """A `wfe worker` process (launched through `worker_module` when the stack has one)."""
        if self.worker_module is None:
            process = self.processes.worker(*args)
        else:
            process = start_module(self.processes, self.worker_module, "worker", *args)
        self.workers[process] = args
        return process

    def replace_exited_workers(self) -> int:
        """What a supervisor (systemd, Kubernetes) does: start a worker again if it exited."""
        exited = [p for p in self.workers if p.poll() is not None]
        for process in exited:
            self.worker(*self.workers.pop(process))
        self.replaced += len(exited)
        return len(exited)

    def logs(self) -> str:
        return log_tails(self.log_dir)


def start_module(
    processes: Processes, module: str, command: str, *args: str
) -> subprocess.Popen[bytes]:
    """Like `Processes.start`, but `python -m module command ...` from the repository root."""
    processes.started += 1
    with open(processes.log_dir / f"{command}-{processes.started}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, command, *args],
            env=processes.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes.running.append(process)
    return process


def stack_settings(broker: str, effects: Effects, **overrides: Any) -> Settings:
    return server_settings(
        broker_url=broker,
        queue_name=unique_queue(),
        http_allowed_ports=frozenset({80, 443, effects.port}),
        **overrides,
    )


def engine_env(settings: Settings, database_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of `wfe` processes for `settings`; creates `data_dir` (logs, beat)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = worker_environment(database_url, settings.broker_url, settings.queue_name, data_dir)
    env["WFE_HTTP_ALLOWED_PORTS"] = ",".join(map(str, sorted(settings.http_allowed_ports)))
    return env


@asynccontextmanager
async def in_process_server(
    settings: Settings, database: TenantDatabase, publisher: Publisher
) -> AsyncIterator[aio.Channel]:
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    running: RunningServer = await start_server(settings, database, verifier, publisher)
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield channel
    finally:
        await running.stop(0)


@asynccontextmanager
async def engine_stack(
    postgres: ThrowawayDatabase,
    effects: Effects,
    directory: Path,
    *,
    broker: str,
    workers: Iterable[tuple[str, ...]] = ((),),
    worker_module: str | None = None,
    beat: bool = True,
    wrap_publisher: Callable[[Publisher], Publisher] | None = None,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """Server in-process, workers (one per `workers` entry, its CLI args) and beat as processes.

    Everything started is stopped on the way out, failure or not, and the queue purged.
    """
    from workers.app import create_app
    from workers.publisher import BackgroundPublisher, CeleryPublisher

    settings = stack_settings(broker, effects)
    env = engine_env(settings, postgres.service_url, directory)
    env.update(extra_env or {})
    processes = Processes(env, directory)
    database = TenantDatabase(postgres.service_url, pool_size=5, max_overflow=5)
    background = BackgroundPublisher(CeleryPublisher(create_app(settings)))
    publisher: Publisher = wrap_publisher(background) if wrap_publisher else background
    try:
        async with in_process_server(settings, database, publisher) as channel:
            stack = Stack(settings, env, processes, database, channel, directory, worker_module)
            for args in workers:
                stack.worker(*args)
            if beat:
                processes.beat()
            yield stack
    finally:
        background.close(timeout=2.0)
        processes.stop_all()
        with suppress(redis.RedisError):
            purge_queue(settings.broker_url, settings.queue_name)
            forget_unacked(settings.broker_url, settings.queue_name)
        await database.dispose()


# --- `wfe serve` as a process ---------------------------------------------------------------


@asynccontextmanager
async def serve_process(
    postgres: ThrowawayDatabase,
    effects: Effects,
    directory: Path,
    *,
    broker: str,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[subprocess.Popen[bytes], aio.Channel, Processes]]:
    """`wfe serve` on a free port, publishing to `broker`; yields the process and a channel."""
    settings = stack_settings(broker, effects)
    port = free_port()
    env = engine_env(settings, postgres.service_url, directory)
    env.update(
        WFE_JWT_SECRET=SECRET,
        WFE_JWT_ISSUER=ISSUER,
        WFE_JWT_AUDIENCE=AUDIENCE,
        WFE_LISTEN_ADDRESS=f"127.0.0.1:{port}",
        WFE_SHUTDOWN_GRACE_SECONDS="1",
    )
    env.update(extra_env or {})
    processes = Processes(env, directory)
    try:
        process = processes.start("serve")
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            ends = time.monotonic() + 30
            while True:
                try:
                    await asyncio.wait_for(channel.channel_ready(), 1.0)
                    break
                except TimeoutError:
                    if process.poll() is not None or time.monotonic() > ends:
                        raise AssertionError(
                            f"wfe serve did not come up:\n{log_tails(directory)}"
                        ) from None
            yield process, channel, processes
    finally:
        processes.stop_all()


# --- tenants, waiting and the final checks ------------------------------------------------


async def create_tenant(
    postgres: ThrowawayDatabase, tier: str, overrides: dict[str, Any] | None = None
) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    admin = TenantDatabase(postgres.admin_url, pool_size=1, max_overflow=0)
    try:
        async with admin.transaction(None) as session:
            await tenants.create(session, tenant_id, f"Tenant {tenant_id}", tier, overrides)
    finally:
        await admin.dispose()
    return tenant_id


async def count_by_status(
    database: TenantDatabase, tenant: str, ids: Sequence[str]
) -> Counter[str]:
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.execute(
            select(Execution.status, func.count())
            .where(Execution.id.in_(ids))
            .group_by(Execution.status)
        )
        return Counter({status: int(n) for status, n in rows.all()})


async def wait_all_finished(
    channel: aio.Channel,
    tenant: str,
    ids: Sequence[str],
    *,
    patience: float,
    diagnostics: Callable[[], str] = lambda: "",
    every_poll: Callable[[], object] = lambda: None,
) -> list[execution_pb2.Execution]:
    """Poll GetExecution for every id until all are terminal; the final records, in order."""
    finished: dict[str, execution_pb2.Execution] = {}
    ends = time.monotonic() + patience
    while True:
        every_poll()
        waiting = [i for i in ids if i not in finished]
        for chunk in range(0, len(waiting), 25):
            records = await asyncio.gather(
                *(get(channel, tenant, i) for i in waiting[chunk : chunk + 25])
            )
            finished.update({r.id: r for r in records if r.status in TERMINAL})
        if len(finished) == len(ids):
            return [finished[i] for i in ids]
        if time.monotonic() > ends:
            stuck = [i for i in ids if i not in finished]
            records = await asyncio.gather(*(get(channel, tenant, i) for i in stuck))
            states = Counter(Status.Name(r.status) for r in records)
            raise AssertionError(
                f"{len(stuck)} of {len(ids)} executions not finished after {patience}s "
                f"({dict(states)}), e.g. {stuck[:3]}\n{diagnostics()}"
            )
        await asyncio.sleep(0.2)


async def leftovers(
    database: TenantDatabase, tenant: str, ids: Sequence[str]
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int, str]]]:
    """Step attempts still 'running', and dispatch rows still queued, for these executions."""
    async with database.transaction(TenantId(tenant)) as session:
        running = await session.execute(
            select(StepAttempt.execution_id, StepAttempt.step_id, StepAttempt.attempt).where(
                StepAttempt.execution_id.in_(ids), StepAttempt.status == "running"
            )
        )
        queued = await session.execute(
            select(Dispatch.execution_id, Dispatch.step_id, Dispatch.attempt, Dispatch.state).where(
                Dispatch.execution_id.in_(ids)
            )
        )
        return [tuple(r) for r in running.all()], [tuple(r) for r in queued.all()]  # type: ignore[misc]


async def attempts_of(
    database: TenantDatabase, tenant: str, ids: Sequence[str]
) -> list[tuple[str, str, int, str, int]]:
    """(execution, step, attempt, status, claims) of every step attempt of these executions."""
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.execute(
            select(
                StepAttempt.execution_id,
                StepAttempt.step_id,
                StepAttempt.attempt,
                StepAttempt.status,
                StepAttempt.claims,
            ).where(StepAttempt.execution_id.in_(ids))
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def assert_settled(
    database: TenantDatabase,
    effects: Effects,
    tenant: str,
    finished: Sequence[execution_pb2.Execution],
    effect_steps: Sequence[str],
    diagnostics: Callable[[], str] = lambda: "",
) -> None:
    """Every execution completed, each effect applied once, nothing left running or queued."""
    not_completed = {
        r.id: (Status.Name(r.status), r.error_detail) for r in finished if r.status != COMPLETED
    }
    assert not not_completed, f"executions that did not complete: {not_completed}\n{diagnostics()}"
    applied = {
        (r.id, s): effects.applied_count(r.id, s)
        for r in finished
        for s in effect_steps
        if effects.applied_count(r.id, s) != 1
    }
    assert not applied, f"(execution, step) -> effects applied, expected 1 each: {applied}"
    ids = [r.id for r in finished]
    running, queued = await leftovers(database, tenant, ids)
    assert running == [], f"step attempts still running after their execution ended: {running}"
    assert queued == [], f"dispatch rows left for finished executions: {queued}"


def forget_unacked(url: str, queue: str) -> int:
    """Drop this run's entries from Redis's shared `unacked` index (left by a SIGKILLed worker).

    A killed worker never returns the messages it held; kombu would restore them an
    hour later into a queue nobody reads. Only entries routed to `queue` (or its I/O lane,
    `queue.io`) are touched.
    """
    if not url.startswith("redis"):
        return 0
    client = redis.Redis.from_url(url)
    try:
        ours = [
            tag
            for tag, raw in client.hscan_iter("unacked")
            if json.loads(raw)[2] in (queue, io_queue(queue))  # [message, exchange, routing_key]
        ]
        if ours:
            client.zrem("unacked_index", *ours)
            client.hdel("unacked", *ours)
        return len(ours)
    finally:
        client.close()


async def lease_report(database: TenantDatabase, tenant: str, ids: Sequence[str]) -> str:
    """Unfinished attempts and dispatch rows (times relative to now): why a step did not move."""
    async with database.transaction(TenantId(tenant)) as session:
        attempts = (
            await session.execute(
                select(
                    StepAttempt.execution_id,
                    StepAttempt.step_id,
                    StepAttempt.attempt,
                    StepAttempt.status,
                    StepAttempt.claims,
                ).where(StepAttempt.execution_id.in_(ids), StepAttempt.status != "completed")
            )
        ).all()
        rows = (
            await session.execute(
                select(
                    Dispatch.execution_id,
                    Dispatch.step_id,
                    Dispatch.attempt,
                    Dispatch.state,
                    Dispatch.fire_at,
                    Dispatch.published_at,
                ).where(Dispatch.execution_id.in_(ids))
            )
        ).all()
    now = datetime.now(UTC)

    def ago(moment: datetime | None) -> str:
        if moment is None:
            return "never"
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return f"now{(aware - now).total_seconds():+.2f}s"

    lines = [
        f"attempt {e}/{s}#{a}: {status}, claims={claims}" for e, s, a, status, claims in attempts
    ]
    lines += [
        f"dispatch {e}/{s}#{a}: {state}, fire_at {ago(fire)}, published {ago(published)}"
        for e, s, a, state, fire, published in rows
    ]
    return "\n".join(lines)
