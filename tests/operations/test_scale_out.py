"""Scale-out: two servers and two workers on one database and one queue, and one of each lost.

The cluster runs as a Compose file would describe it (`tests/operations/cluster.py`): two
`wfe serve`, two `wfe worker`, `wfe beat` and a `wfe gateway`, all local processes. Clients
start executions on both servers while a live stream on the second follows them; mid-run
the first server and the first worker are SIGKILLed. What a user relies on must still hold:
a start retried on the surviving server with the same request id gets the same execution,
every execution completes exactly once, each external effect is applied once, the stream
misses nothing and repeats nothing, and a gateway is replaced by starting another.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc import aio
from sqlalchemy import select

from persistence.models import Execution
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import require, token
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import Processes, broker_unavailable_reason, broker_url
from tests.execution_helpers import (
    active_workflow,
    executions,
    http,
    step,
    struct,
    workflow,
)
from tests.fault_harness import (
    assert_settled,
    count_by_status,
    create_tenant,
    lease_report,
    wait_all_finished,
)
from tests.operations.cluster import Cluster, Server, cluster
from tests.stream_helpers import Stream, subscribe
from wfe.v1 import event_pb2, execution_pb2

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

EXECUTIONS = 200
CLIENTS = 4
WINDOW = 40
"""Executions the clients keep started but not yet completed: starts span the whole run."""
KILL_AFTER = 50
"""Completions seen before the kill: mid-run, as at most KILL_AFTER + WINDOW are started."""
STEPS = ["input", "call", "done"]
# As a Compose file sizes them for a PostgreSQL it shares: each server keeps at most 5
# connections, opened once (10, and 10 more opened and closed as needed, by default).
COMPOSE_ENV = {"WFE_DB_POOL_SIZE": "5", "WFE_DB_MAX_OVERFLOW": "0"}
COMPLETED_EVENT = "workflow_execution_completed"
STEP_COMPLETED_EVENT = "workflow_step_completed"


@pytest.fixture
def shared_broker() -> str:
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    return url


def calling(effects: Effects) -> dict[str, Any]:
    """input -> call (POST to the external system, a dispatched step) -> done (its key)."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http(
            "call",
            "done",
            effects.url(),
            method="POST",
            name="Call",
            arguments={"body": {"n": "$.input.n"}},
        ),
        step("done", "output", name="Done", config={"values": {"key": "$.call.body.key"}}),
    )


@dataclass
class Feed:
    """Every event of a live stream, as it arrives; waits are on its arrivals."""

    stream: Stream
    events: list[event_pb2.Event] = field(default_factory=list)
    completed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async for answer in self.stream:
            event = answer.event
            if event.WhichOneof("payload") == "heartbeat":
                continue
            self.events.append(event)
            if event.type == COMPLETED_EVENT:
                status = event.workflow_execution_completed.status
                self.completed[event.execution_id].append(status)
                async with self.arrived:
                    self.arrived.notify_all()

    async def until(self, holds: Callable[[], bool], what: str, patience: float) -> None:
        ends = time.monotonic() + patience
        async with self.arrived:
            while not holds():
                assert self.task is not None and not self.task.done(), (
                    f"the stream ended while waiting for {what}: "
                    f"{self.task and not self.task.cancelled() and self.task.exception()}"
                )
                left = ends - time.monotonic()
                assert left > 0, f"{what}: not within {patience}s"
                # Woken by each completion; a short cap also notices a stream that ended.
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), min(left, 1.0))

    async def close(self) -> None:
        self.stream.cancel()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Clients:
    """Callers spread over both servers: start n goes to server n % 2 first, and to the
    other when that one is gone, with the same request id."""

    servers: list[Server]
    tenant: str
    workflow_id: str
    request_ids: list[str]
    answered: dict[str, tuple[str, str]] = field(default_factory=dict)
    """request id -> (execution id, the server that answered)."""
    failovers: list[tuple[str, grpc.StatusCode]] = field(default_factory=list)
    """Request ids first sent to a dead server (and how that call failed), then to the other."""

    def request(self, n: int) -> execution_pb2.StartExecutionRequest:
        return execution_pb2.StartExecutionRequest(
            workflow_id=self.workflow_id, input=struct({"n": n}), request_id=self.request_ids[n]
        )

    async def start_on(self, server: Server, n: int) -> execution_pb2.Execution:
        metadata = (
            ("authorization", f"Bearer {token([self.tenant])}"),
            ("x-tenant-id", self.tenant),
        )
        answer = await executions(server.channel).StartExecution(
            self.request(n), metadata=metadata, timeout=15
        )
        return answer.execution

    async def start(self, n: int) -> None:
        first, other = self.servers[n % 2], self.servers[(n + 1) % 2]
        try:
            started, by = await self.start_on(first, n), first
        except aio.AioRpcError as error:
            if first.process.poll() is None:  # a live server's answer stands
                raise
            # The server died before or during the call: whether it made the execution
            # is unknown, so the other server gets the same request.
            self.failovers.append((self.request_ids[n], error.code()))
            started, by = await self.start_on(other, n), other
        self.answered[self.request_ids[n]] = (started.id, by.name)


async def by_request_id(
    database: TenantDatabase, tenant: str
) -> dict[str | None, list[tuple[str, str]]]:
    """Every execution of the tenant, (id, status), by the request id that made it."""
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.execute(
            select(Execution.request_id, Execution.id, Execution.status).order_by(Execution.id)
        )
        found: dict[str | None, list[tuple[str, str]]] = defaultdict(list)
        for request_id, execution_id, status in rows.all():
            found[request_id].append((execution_id, status))
        return found


async def get_over_rest(url: str, tenant: str, path: str) -> httpx.Response:
    """GET `/api/<path>` through a gateway, as the tenant."""
    headers = {"Authorization": f"Bearer {token([tenant])}", "X-Tenant-ID": tenant}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(f"{url}/api/{path}", headers=headers)


@pytest.mark.timeout(240)
async def test_two_servers_and_two_workers_survive_losing_one_of_each(
    postgres: ThrowawayDatabase, effects: Effects, shared_broker: str, tmp_path: Path
) -> None:
    tenant = await create_tenant(postgres, "enterprise", {"max_concurrent_executions": 200})
    database = TenantDatabase(postgres.service_url, pool_size=2, max_overflow=2)
    async with cluster(
        postgres, effects, tmp_path, broker=shared_broker, extra_env=COMPOSE_ENV
    ) as running:
        try:
            await scenario(running, database, effects, tenant)
        except Exception as failed:  # whatever failed, with what every process logged
            raise AssertionError(f"{type(failed).__name__}: {failed}\n{running.logs()}") from failed
        finally:
            await database.dispose()


async def scenario(
    running: Cluster, database: TenantDatabase, effects: Effects, tenant: str
) -> None:
    began = time.monotonic()
    first, second = running.server("serve-1"), running.server("serve-2")
    running.worker("worker-1")  # the one to lose
    running.worker("worker-2")
    running.beat()
    gateway = running.gateway("gateway-1", first)
    await asyncio.gather(
        running.ready(first),
        running.ready(second),
        running.workers_ready(["worker-1", "worker-2"]),
        running.gateway_ready(gateway),
    )
    up = time.monotonic() - began

    workflow_id = await active_workflow(first.channel, tenant, calling(effects))
    through_first = await get_over_rest(gateway.url, tenant, f"workflows/{workflow_id}")
    assert through_first.status_code == 200, through_first.text
    stream = subscribe(second.channel, tenant, ["all_executions"], 0, ["admin"])
    feed = Feed(stream)
    feed.start()
    starting: list[asyncio.Task[None]] = []
    try:
        await run_and_check(running, database, effects, tenant, workflow_id, feed, starting)
    finally:
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        await feed.close()
    print(f"up in {up:.1f}s, all done in {time.monotonic() - began:.1f}s")


async def run_and_check(
    running: Cluster,
    database: TenantDatabase,
    effects: Effects,
    tenant: str,
    workflow_id: str,
    feed: Feed,
    starting: list[asyncio.Task[None]],
) -> None:
    first, second = running.servers
    doomed_worker, survivor_worker = running.workers
    run = uuid.uuid4().hex[:12]
    clients = Clients(
        [first, second], tenant, workflow_id, [f"scale-{run}-{n:03d}" for n in range(EXECUTIONS)]
    )
    numbers = iter(range(EXECUTIONS))

    async def client() -> None:
        for n in numbers:  # shared by every client: each number is started once
            await feed.until(lambda n=n: n - len(feed.completed) < WINDOW, f"room for #{n}", 90)
            await clients.start(n)

    async def kill_mid_run() -> tuple[int, int]:
        await feed.until(lambda: len(feed.completed) >= KILL_AFTER, "completions to kill at", 90)
        Processes.kill(first.process)  # SIGKILL, to its whole process group
        Processes.kill(doomed_worker)  # and to the worker's pool processes with it
        return len(feed.completed), len(clients.answered)

    starting += [asyncio.create_task(client()) for _ in range(CLIENTS)]
    completed_at_kill, started_at_kill = await kill_mid_run()
    assert first.process.poll() is not None and doomed_worker.poll() is not None
    replacement = running.gateway("gateway-2", second)  # comes up while the run goes on
    await asyncio.gather(*starting)
    assert started_at_kill < EXECUTIONS, "every start was made before the kill"
    assert completed_at_kill < EXECUTIONS

    request_ids = clients.request_ids
    ids = [clients.answered[r][0] for r in request_ids]
    try:
        await feed.until(
            lambda: len(feed.completed) >= EXECUTIONS, f"{EXECUTIONS} completion events", 120
        )
    except AssertionError as late:
        states = await count_by_status(database, tenant, ids)
        report = await lease_report(database, tenant, ids)
        raise AssertionError(f"{late}\nin the database: {dict(states)}\n{report}") from None
    finished = await wait_all_finished(second.channel, tenant, ids, patience=60)
    await assert_settled(database, effects, tenant, finished, ["call"])
    assert [r.result["key"] for r in finished] == [f"{i}:call:1" for i in ids]

    # Exactly once: one execution per request id, whichever server a start reached or how
    # often it was sent; and the answers the clients got are those executions.
    made = await by_request_id(database, tenant)
    assert set(made) == set(request_ids), f"executions without our request ids: {made.keys()}"
    twice = {r: rows for r, rows in made.items() if len(rows) != 1}
    assert not twice, f"request ids with more than one execution: {twice}"
    assert {r: rows[0][0] for r, rows in made.items()} == {
        r: clients.answered[r][0] for r in request_ids
    }
    assert {rows[0][1] for rows in made.values()} == {"completed"}
    # The clients sent starts to the dead server after it died and went to the other one.
    assert clients.failovers, "no start failed over from the killed server"
    how = Counter(code.name for _, code in clients.failovers)
    answered_by = Counter(by for _, by in clients.answered.values())
    assert answered_by["serve-1"] and answered_by["serve-2"], answered_by
    # A start the first server answered before dying, sent again to the second with the
    # same request id, is the same execution (the idempotency promise, across servers).
    by_first = [r for r in request_ids if clients.answered[r][1] == "serve-1"][:10]
    again = await asyncio.gather(
        *(clients.start_on(second, request_ids.index(r)) for r in by_first)
    )
    assert [e.id for e in again] == [clients.answered[r][0] for r in by_first]

    # The stream on the surviving server saw everything once, in order.
    seen = [e.event_id for e in feed.events]
    assert len(seen) == len(set(seen)), "an event came twice"
    assert seen == sorted(seen), "events out of order"
    assert {i: feed.completed[i] for i in ids} == {i: ["completed"] for i in ids}
    steps_done: dict[str, list[str]] = defaultdict(list)
    for event in feed.events:
        if event.type == STEP_COMPLETED_EVENT:
            steps_done[event.execution_id].append(event.workflow_step_completed.step_id)
    wrong = {i: steps_done[i] for i in ids if steps_done[i] != STEPS}
    assert not wrong, f"step-completed events not once each, in order: {wrong}"

    # The survivors survived; a gateway whose server died answers 503, a new one works.
    assert second.process.poll() is None, "the surviving server exited"
    assert survivor_worker.poll() is None, "the surviving worker exited"
    assert running.beats[0].poll() is None, "beat exited"
    orphaned = await get_over_rest(running.gateways[0].url, tenant, f"executions/{ids[0]}")
    assert orphaned.status_code == 503, orphaned.text
    await running.gateway_ready(replacement)
    answer = await get_over_rest(replacement.url, tenant, f"executions/{ids[0]}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == ids[0]
    assert answer.json()["status"] == "EXECUTION_STATUS_COMPLETED"
    print(
        f"killed at {completed_at_kill} completed / {started_at_kill} started; "
        f"failovers {dict(how)}; answered by {dict(answered_by)}"
    )
