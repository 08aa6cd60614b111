"""The system under test, and the floors beside it, for one bench run.

One throwaway PostgreSQL database (owner + RLS service role, migrated), a real
`wfe serve` process, `wfe worker` and `wfe beat` processes on the chosen broker
(which alone are shown the bench's own dispatched no-op tool, `bench.noop_tool`),
and next to them the floors: a no-op Celery worker started the same way, a no-op
grpc.aio server and a no-op grpc.aio streaming server. The engine keeps its
production clocks (lease, grace, sweep interval), because the tests' short clocks
would make the sweeper re-publish any backlog older than a second. Everything
started here is stopped, and the database dropped, when the context ends.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from celery import Celery
from grpc import aio
from sqlalchemy.engine import make_url

from bench import cpu, floor_app, noop_tool
from service.tenants import service as tenants
from tenancy.database import TenantDatabase
from tests.conftest import AUDIENCE, ISSUER, SECRET, auth
from tests.databases import postgres_admin_url, postgres_database
from tests.engine_stack import purge_queue
from tests.execution_helpers import active_workflow

Metadata = tuple[tuple[str, str], ...]
LISTENING = re.compile(rb"listening on [\w.\-]+:(\d+)")
TERMINAL_SQL = "('completed', 'failed', 'cancelled')"
SYSTEM_PROCESSES = ("serve", "worker", "beat")
PGSTAT_IDLE_SECONDS = 11.0
"""Past PostgreSQL's 10 s after which an idle backend publishes its statistics."""
IDLE_COMMITS_PER_SECOND = 2
"""What the idle system commits in a second, at most (its periodic sweeps)."""
FLOOR_PROCESSES = ("floor-worker",)


@dataclass(frozen=True)
class StackOptions:
    broker_url: str
    concurrency: int
    log_dir: Path


@dataclass
class Spawned:
    """Child processes in their own sessions, so a stop reaches their prefork children too."""

    log_dir: Path
    running: list[subprocess.Popen[bytes]] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    """Each started process by name: its session's leader."""

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> Path:
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running.append(process)
        self.pids[name] = process.pid
        return log

    def port_of(
        self, log: Path, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None
    ) -> int:
        """The port a child (`process`, default the last started) printed as
        `... listening on HOST:PORT`."""
        process = process or self.running[-1]
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            match = LISTENING.search(log.read_bytes())
            if match:
                return int(match.group(1))
            if process.poll() is not None:
                break
            time.sleep(0.05)
        tail = log.read_bytes()[-2000:].decode(errors="replace")
        raise RuntimeError(f"{log.name}: no port announced\n{tail}")

    def stop_all(self) -> None:
        _terminate(self.running)
        self.running.clear()
        self.pids.clear()

    def stop(self, names: Collection[str]) -> None:
        """Stop the named processes only, as `stop_all` stops them all."""
        leaders = {self.pids.pop(name) for name in names}
        chosen = [process for process in self.running if process.pid in leaders]
        _terminate(chosen)
        self.running[:] = [process for process in self.running if process.pid not in leaders]


def _terminate(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process's session, then SIGKILL to those still up after 10 s."""
    for process in processes:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    ends = time.monotonic() + 10
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(max(ends - time.monotonic(), 0.1))
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@dataclass(frozen=True)
class Engine:
    """One deployment of the engine on the stack's database and broker, on a queue of its
    own: its `wfe serve` processes (by port), and every process's name in `Spawned.pids`
    (servers, workers and one beat)."""

    name: str
    queue: str
    server_ports: tuple[int, ...]
    processes: tuple[str, ...]

    @property
    def targets(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.server_ports]


@dataclass(frozen=True)
class BenchTenant:
    """A tenant with one active workflow, and the call metadata that grants it."""

    id: str
    workflow_id: str
    metadata: Metadata


class Observer:
    """Reads the bench database as the superuser (RLS does not apply), without committing.

    All reads share one READ COMMITTED transaction that is rolled back, never
    committed, so polling leaves `pg_stat_database.xact_commit` untouched and each
    statement still sees what committed before it.
    """

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._connection = connection
        self.pid = connection.info.backend_pid

    async def _one(self, sql: str, *args: Any) -> Any:
        cursor = await self._connection.execute(sql, args)
        return await cursor.fetchone()

    async def _all(self, sql: str, *args: Any) -> list[Any]:
        cursor = await self._connection.execute(sql, args)
        return await cursor.fetchall()

    async def release(self) -> None:
        """End the read transaction (a rollback) so it pins nothing between phases."""
        await self._connection.rollback()

    async def outcome(self, tenant_id: str) -> tuple[int, int]:
        """(completed, failed or cancelled) executions of the tenant."""
        row = await self._one(
            "SELECT count(*) FILTER (WHERE status = 'completed'),"
            " count(*) FILTER (WHERE status IN ('failed', 'cancelled'))"
            " FROM executions WHERE tenant_id = %s",
            tenant_id,
        )
        return int(row[0]), int(row[1])

    async def unfinished(self) -> int:
        row = await self._one(f"SELECT count(*) FROM executions WHERE status NOT IN {TERMINAL_SQL}")
        return int(row[0])

    async def finishes(self, tenant_id: str, step_id: str) -> list[tuple[str, datetime]]:
        """(instance id, finish) of every completed attempt of `step_id`, loop iterations
        included (`check@each:3`), of the tenant's executions."""
        rows = await self._all(
            "SELECT step_id, finished_at FROM step_attempts WHERE tenant_id = %s"
            " AND status = 'completed' AND (step_id = %s OR step_id LIKE %s)",
            tenant_id,
            step_id,
            step_id + "@%",
        )
        return [(str(row[0]), row[1]) for row in rows]

    async def last_completion(self, tenant_id: str) -> datetime:
        row = await self._one(
            "SELECT max(completed_at) FROM executions WHERE tenant_id = %s", tenant_id
        )
        moment: datetime = row[0]
        return moment

    async def first_failure(self, tenant_id: str) -> str:
        row = await self._one(
            "SELECT error_detail FROM executions WHERE tenant_id = %s"
            " AND status IN ('failed', 'cancelled') LIMIT 1",
            tenant_id,
        )
        return str(row[0]) if row else ""

    async def execution_events(self, tenant_id: str) -> int:
        """Events of the tenant's executions in the log (what `all_executions` streams)."""
        row = await self._one(
            "SELECT count(*) FROM events WHERE tenant_id = %s AND execution_id IS NOT NULL",
            tenant_id,
        )
        return int(row[0])

    async def steps(self, execution_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The `steps` record (the seed's per-step progress) of each execution."""
        rows = await self._all(
            "SELECT id, steps FROM executions WHERE id = ANY(%s)", list(execution_ids)
        )
        return {str(row[0]): row[1] for row in rows}

    async def all_steps(self, tenant_id: str) -> list[dict[str, Any]]:
        """The `steps` record of each of the tenant's executions, oldest first."""
        rows = await self._all(
            "SELECT steps FROM executions WHERE tenant_id = %s ORDER BY created_at", tenant_id
        )
        return [row[0] for row in rows]

    async def wait(
        self, tenant_id: str, expected: int, patience: float, interval: float = 0.1
    ) -> None:
        """Until `expected` executions of the tenant completed; one query per `interval`."""
        ends = time.monotonic() + patience
        while True:
            completed, failed = await self.outcome(tenant_id)
            if failed:
                raise RuntimeError(
                    f"{failed} execution(s) of {tenant_id} failed: "
                    f"{await self.first_failure(tenant_id)}"
                )
            if completed >= expected:
                return
            if time.monotonic() > ends:
                raise TimeoutError(f"{tenant_id}: {completed}/{expected} completed in {patience}s")
            await asyncio.sleep(interval)

    async def drain(self, patience: float = 180.0) -> None:
        """Until no execution of any tenant is still queued, pending or running."""
        ends = time.monotonic() + patience
        while (left := await self.unfinished()) > 0:
            if time.monotonic() > ends:
                raise TimeoutError(f"{left} execution(s) still unfinished after {patience}s")
            await asyncio.sleep(0.2)
        await self.release()


@dataclass
class Stack:
    """Addresses and handles of everything one bench run talks to."""

    options: StackOptions
    database_name: str
    service_url: str
    admin_database: TenantDatabase
    setup_channel: aio.Channel
    server_port: int
    noop_port: int
    stream_floor_port: int
    effects_port: int
    queue: str
    floor_queue: str
    floor: Celery
    observer: Observer
    stats: psycopg.AsyncConnection[Any]
    marker_url: str
    spawned: Spawned
    """The stack's processes; a bench part may start more (stopped with the rest)."""
    tools: Path = Path()
    """The folder declaring the bench's tools, first on the engine processes' PYTHONPATH."""
    queues: list[str] = field(default_factory=list)
    """Queues of the engines `start_engine` started, purged with the stack's own."""

    @property
    def engine(self) -> Engine:
        """The stack's own system: one server, one worker of `options.concurrency`, one beat."""
        return Engine("system", self.queue, (self.server_port,), SYSTEM_PROCESSES)

    def start_engine(
        self,
        name: str,
        *,
        servers: int,
        concurrencies: Sequence[int],
        extra_env: Callable[[str], dict[str, str]] | None = None,
    ) -> Engine:
        """Another engine on the same database and broker, on a queue of its own.

        `servers` `wfe serve` processes, one `wfe worker --concurrency c` for each `c` of
        `concurrencies`, and one `wfe beat`, with the stack's system's environment (the
        bench's tools, production clocks) but a data folder of their own (beat's
        schedule). `extra_env(role)` ("serve", "worker", "beat") adds variables to each
        process's environment. All start at once; returns once every server announced its
        port.
        """
        queue = f"{self.queue}-{name}"
        self.queues.append(queue)
        base = _engine_environment(
            self.service_url, self.options, queue, self.effects_port, self.tools
        )
        base["WFE_DATA_DIR"] = str(self.options.log_dir / f"data-{name}")

        def env(role: str) -> dict[str, str]:
            return {**base, **(extra_env(role) if extra_env else {})}

        logs: list[tuple[Path, subprocess.Popen[bytes]]] = []
        names: list[str] = []
        for number in range(1, servers + 1):
            names.append(f"{name}-serve-{number}")
            log = self.spawned.start(names[-1], ["-m", "cli.main", "serve"], env("serve"))
            logs.append((log, self.spawned.running[-1]))
        for number, concurrency in enumerate(concurrencies, start=1):
            names.append(f"{name}-worker-{number}")
            argv = [
                "-m",
                "cli.main",
                "worker",
                f"--name={queue}-{number}@%h",
                f"--concurrency={concurrency}",
            ]
            self.spawned.start(names[-1], argv, env("worker"))
        names.append(f"{name}-beat")
        self.spawned.start(names[-1], ["-m", "cli.main", "beat"], env("beat"))
        ports = tuple(self.spawned.port_of(log, process=process) for log, process in logs)
        return Engine(name, queue, ports, tuple(names))

    def stop_engine(self, engine: Engine) -> None:
        """Stop an engine `start_engine` started (its queue is purged at the end)."""
        self.spawned.stop(engine.processes)

    @property
    def server_target(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    @property
    def noop_target(self) -> str:
        return f"127.0.0.1:{self.noop_port}"

    @property
    def stream_floor_target(self) -> str:
        return f"127.0.0.1:{self.stream_floor_port}"

    def effects_url(self, **query: object) -> str:
        params = "&".join(f"{name}={value}" for name, value in query.items())
        return f"http://127.0.0.1:{self.effects_port}/effects" + (f"?{params}" if params else "")

    async def tenant(self, document: dict[str, Any], **overrides: int | None) -> BenchTenant:
        """A fresh enterprise tenant (with limit overrides) and an active workflow of its own."""
        tenant_id = f"b-{uuid.uuid4().hex[:12]}"
        async with self.admin_database.transaction(None) as session:
            await tenants.create(session, tenant_id, tenant_id, "enterprise", dict(overrides))
        workflow_id = await active_workflow(self.setup_channel, tenant_id, document)
        return BenchTenant(tenant_id, workflow_id, auth(tenant_id))

    async def commits(self) -> int:
        """`xact_commit` of the bench database once every backend has published its share.

        A busy backend publishes its counts at most once a second, an idle one about
        10 s after its last transaction (PostgreSQL 15), and `pg_stat_force_next_flush()`
        reaches only the caller. So this waits past that interval, then until a second
        passes with no more than the idle system's own commits (its sweeps), 30 s at
        most. The backends are left alone: ending them to force their counts out was
        tried, and counted hundreds of commits that the server log of the same run
        does not show. The idle system's few commits during the wait are counted in.
        """
        await asyncio.sleep(PGSTAT_IDLE_SECONDS)
        last, ends = await self._xact_commit(), time.monotonic() + 30.0
        while time.monotonic() < ends:
            await asyncio.sleep(1.0)
            now = await self._xact_commit()
            if now - last <= IDLE_COMMITS_PER_SECOND:
                return now
            last = now
        return last

    async def _xact_commit(self) -> int:
        await self.stats.execute("SELECT pg_stat_clear_snapshot()")
        cursor = await self.stats.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.database_name,)
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def system_cpu(self) -> cpu.Sample:
        """CPU so far of serve, worker (its children too), beat and the database's backends.

        The bench's own observer backend is left out; `stats` is on another database.
        """
        cursor = await self.stats.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s",
            (self.database_name, self.observer.pid),
        )
        backends = [int(row[0]) for row in await cursor.fetchall()]
        leaders = {self.spawned.pids[name] for name in SYSTEM_PROCESSES}
        return cpu.Sample(cpu.sessions_seconds(leaders), cpu.processes_seconds(backends))

    def floor_cpu(self) -> float:
        """CPU seconds so far of the Celery floor's worker and its prefork children."""
        return cpu.sessions_seconds({self.spawned.pids[name] for name in FLOOR_PROCESSES})


def _libpq(url: Any) -> str:
    return str(make_url(str(url) if isinstance(url, str) else url).set(drivername="postgresql"))


def _engine_environment(
    database_url: str, options: StackOptions, queue: str, effects_port: int, tools: Path
) -> dict[str, str]:
    """`WFE_*` for serve, worker and beat: production clocks; loopback allowed for the stub.

    `tools` goes first on PYTHONPATH: it declares the bench's own tools (`bench_noop`) to
    these processes only, without installing anything into the product. No `OTEL_*`
    variable of the bench's own environment reaches them: tracing is off unless a bench
    part turns it on (`Stack.start_engine`'s `extra_env`).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFE_", "OTEL_"))}
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(tools), env.get("PYTHONPATH")])),
        WFE_DATABASE_URL=database_url,
        WFE_BROKER_URL=options.broker_url,
        WFE_QUEUE_NAME=queue,
        WFE_DATA_DIR=str(options.log_dir / "data"),
        WFE_LOG_LEVEL="WARNING",
        WFE_WORKER_CONCURRENCY=str(options.concurrency),
        WFE_HTTP_ALLOWED_NETWORKS="127.0.0.0/8",
        WFE_HTTP_ALLOWED_PORTS=f"80,443,{effects_port}",
        WFE_JWT_SECRET=SECRET,
        WFE_JWT_ISSUER=ISSUER,
        WFE_JWT_AUDIENCE=AUDIENCE,
        WFE_LISTEN_ADDRESS="127.0.0.1:0",
    )
    return env


def purge(broker_url: str, queue: str) -> None:
    """Drop what the run left under its queue name (never anything else on the broker)."""
    if broker_url.startswith(("redis://", "rediss://")):
        purge_queue(broker_url, queue)
        return
    from kombu import Connection, Queue  # type: ignore[attr-defined]

    with suppress(Exception), Connection(broker_url, connect_timeout=3) as connection:  # type: ignore[no-untyped-call]
        Queue(queue).bind(connection.default_channel).delete()  # type: ignore[no-untyped-call]


def _purge_each(broker_url: str, queues: Sequence[str]) -> None:
    for queue in queues:
        purge(broker_url, queue)


def marker_url(broker_url: str) -> str:
    """Where the floor's last task records its finish: the broker if Redis, else local Redis."""
    if broker_url.startswith(("redis://", "rediss://")):
        return broker_url
    return os.environ.get("BENCH_MARKER_URL", "redis://127.0.0.1:6379/0")


@asynccontextmanager
async def open_stack(options: StackOptions) -> AsyncIterator[Stack]:
    """Start the system and the floors; stop and clean up all of it on the way out."""
    options.log_dir.mkdir(parents=True, exist_ok=True)
    suffix = uuid.uuid4().hex[:10]
    queue, floor_queue = f"wfe-bench-{suffix}", f"wfe-bench-floor-{suffix}"
    marker = marker_url(options.broker_url)
    spawned = Spawned(options.log_dir)
    async with AsyncExitStack() as stack:
        database = stack.enter_context(postgres_database())
        # Removed after the processes that read it are stopped (callbacks run in reverse).
        tools = noop_tool.declare(
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wfe-bench-tools-")))
        )
        stack.callback(purge, marker, floor_queue)
        stack.callback(purge, options.broker_url, floor_queue)
        stack.callback(purge, options.broker_url, queue)
        queues: list[str] = []
        stack.callback(_purge_each, options.broker_url, queues)
        stack.callback(spawned.stop_all)
        name = make_url(database.service_url).database
        assert name is not None

        effects_log = spawned.start("effects", ["-m", "bench.effects_server"], dict(os.environ))
        effects_port = spawned.port_of(effects_log)
        env = _engine_environment(database.service_url, options, queue, effects_port, tools)
        server_log = spawned.start("serve", ["-m", "cli.main", "serve"], env)
        server_port = spawned.port_of(server_log)
        worker = ["-m", "cli.main", "worker", f"--name={queue}@%h"]
        spawned.start("worker", worker, env)
        spawned.start("beat", ["-m", "cli.main", "beat"], env)
        floor_env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            floor_app.ENV_BROKER: options.broker_url,
            floor_app.ENV_QUEUE: floor_queue,
            floor_app.ENV_CONCURRENCY: str(options.concurrency),
            floor_app.ENV_MARKER: marker,
        }
        spawned.start("floor-worker", ["-m", "bench.floor_app"], floor_env)
        noop_log = spawned.start("noop-server", ["-m", "bench.noop_server"], dict(os.environ))
        noop_port = spawned.port_of(noop_log)
        stream_floor_log = spawned.start(
            "stream-floor", ["-m", "bench.stream_floor"], dict(os.environ)
        )
        stream_floor_port = spawned.port_of(stream_floor_log)

        admin = TenantDatabase(database.admin_url, pool_size=1, max_overflow=1)
        stack.push_async_callback(admin.dispose)
        channel = await stack.enter_async_context(aio.insecure_channel(f"127.0.0.1:{server_port}"))
        superuser = make_url(postgres_admin_url())
        observed = await psycopg.AsyncConnection.connect(_libpq(superuser.set(database=name)))
        stack.push_async_callback(observed.close)
        stats = await psycopg.AsyncConnection.connect(_libpq(superuser), autocommit=True)
        stack.push_async_callback(stats.close)
        yield Stack(
            options=options,
            database_name=name,
            service_url=database.service_url,
            admin_database=admin,
            setup_channel=channel,
            server_port=server_port,
            noop_port=noop_port,
            stream_floor_port=stream_floor_port,
            effects_port=effects_port,
            queue=queue,
            floor_queue=floor_queue,
            floor=floor_app.create_floor_app(
                options.broker_url, floor_queue, options.concurrency, marker
            ),
            observer=Observer(observed),
            stats=stats,
            marker_url=marker,
            spawned=spawned,
            tools=tools,
            queues=queues,
        )
