"""Faults an operator meets in production, on real processes: each test breaks one thing.

* PostgreSQL restarts mid-run (a failover, a minor upgrade): on a cluster of the test's
  own, never the shared one, down for longer than a lease. While it is down every call
  answers UNAVAILABLE (the code a client retries on), never INTERNAL or UNKNOWN; once it
  is back, calls succeed again within seconds (the pools let go of their dead
  connections), every execution ends with each step's external effect applied once, and
  no step is taken over: the workers ran on, and record what they ran once they can.
* A step outlasts Redis's visibility timeout, or RabbitMQ's consumer timeout: the broker
  hands its message out again while it runs. The second delivery must not run the step
  beside the first.
* A client's deadline runs out around a StartExecution: whatever it was answered, a retry
  with the same request_id finds one execution, and a call whose deadline had passed
  before the server got to it starts nothing.

Both brokers are the test's own: `tests.fault_harness.own_redis` and
`tests.operations.private_rabbitmq` (a node-wide consumer timeout before RabbitMQ 3.11.15).
`tests.operations.private_postgres` makes the private cluster and
`tests.operations.recording_worker` is the worker that notes each delivery it gets.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from grpc import aio
from sqlalchemy import func, select

from persistence.models import AttemptStatus, Execution
from service.server import RunningServer, start_server
from service.servicers.execution import ExecutionServicer
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, auth, require
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects, _Handler, _Server
from tests.engine_stack import (
    Processes,
    broker_unavailable_reason,
    broker_url,
    purge_queue,
)
from tests.execution_helpers import (
    active_workflow,
    executions,
    http,
    start,
    step,
    struct,
    transform,
    workflow,
)
from tests.fault_harness import (
    assert_settled,
    attempts_of,
    create_tenant,
    engine_env,
    engine_stack,
    forget_unacked,
    lease_report,
    log_tails,
    own_redis,
    serve_process,
    stack_settings,
    start_module,
    wait_all_finished,
)
from tests.operations import private_postgres, private_rabbitmq
from tests.operations.private_postgres import (
    PrivateCluster,
    private_cluster,
    throwaway_database,
)
from tests.operations.recording_worker import LOG_VARIABLE, read_deliveries
from wfe.v1 import execution_pb2

pytestmark = [pytest.mark.postgres, pytest.mark.faults, pytest.mark.integration]

logger = logging.getLogger(__name__)

OK = grpc.StatusCode.OK
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED


CLOCKS = {
    "WFE_LEASE_SECONDS": "5",
    "WFE_DISPATCH_GRACE_SECONDS": "3",
    "WFE_SWEEP_INTERVAL_SECONDS": "1",
}
"""The engine processes' clocks: short, but not the suite's 2 s leases and 0.5 s sweeps. On a
machine whose cores are shared with other runs, a live worker may be off the CPU for more
than 2 s: its lease goes, the step is taken over (three times: the execution fails), and
sweeps queue up faster than they run. That is not the fault these tests are about."""


PATIENCE = 120.0
"""How long a wait for progress lasts before it fails: it ends as soon as the progress is
seen, so only a machine starved of CPU (workers take seconds to start there) comes near it."""


@pytest.fixture
def machine_broker() -> str:
    """The machine's broker; each stack uses a queue of its own on it."""
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    return url


@pytest.fixture(scope="module")
def quiet_cluster() -> Iterator[PrivateCluster]:
    """A PostgreSQL of this module's own that nobody restarts: the shared server's
    connection slots are other runs' to fill, and a refused connection is not the fault
    these tests are about."""
    require(private_postgres.unavailable_reason(), "a private PostgreSQL cluster")
    with private_cluster() as cluster:
        yield cluster


@pytest.fixture
def own_database(quiet_cluster: PrivateCluster) -> Iterator[ThrowawayDatabase]:
    with throwaway_database(quiet_cluster) as database:
        yield database


def two_calls(effects: Effects, **query: Any) -> dict[str, Any]:
    """input -> call (POST) -> shape (transform) -> notify (POST) -> done."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http("call", "shape", effects.url(**query), method="POST", name="Call"),
        transform("shape", "notify", {"key": "$.call.body.key"}, name="Shape"),
        http(
            "notify",
            "done",
            effects.url(**query),
            method="POST",
            name="Notify",
            arguments={"body": {"about": "$.shape.key"}},
        ),
        step("done", "output", name="Done", config={"values": {"key": "$.notify.body.key"}}),
    )


async def code_of(call: Awaitable[object]) -> grpc.StatusCode:
    try:
        await call
    except aio.AioRpcError as error:
        return error.code()
    return OK


# --- 1. PostgreSQL restarts mid-run ----------------------------------------------------------


async def calls_while_down(
    channel: aio.Channel, tenant: str, workflow_id: str, execution_id: str, request_id: str
) -> dict[str, grpc.StatusCode]:
    """A client's usual calls, each twice (a pooled connection, then a fresh connect)."""
    stub = executions(channel)
    codes: dict[str, grpc.StatusCode] = {}
    for round_ in (1, 2):
        codes[f"GetExecution#{round_}"] = await code_of(
            stub.GetExecution(
                execution_pb2.GetExecutionRequest(execution_id=execution_id),
                metadata=auth(tenant),
                timeout=10,
            )
        )
        codes[f"ListExecutions#{round_}"] = await code_of(
            stub.ListExecutions(
                execution_pb2.ListExecutionsRequest(page_size=10), metadata=auth(tenant), timeout=10
            )
        )
        codes[f"StartExecution#{round_}"] = await code_of(
            stub.StartExecution(
                execution_pb2.StartExecutionRequest(
                    workflow_id=workflow_id, input=struct({"n": -1}), request_id=request_id
                ),
                metadata=auth(tenant),
                timeout=10,
            )
        )
    return codes


async def until_answering(
    channel: aio.Channel, tenant: str, execution_id: str, patience: float
) -> tuple[float, list[grpc.StatusCode]]:
    """Seconds until GetExecution and ListExecutions both succeed; the codes seen meanwhile."""
    stub = executions(channel)
    began = time.monotonic()
    seen: list[grpc.StatusCode] = []
    while True:
        codes = [
            await code_of(
                stub.GetExecution(
                    execution_pb2.GetExecutionRequest(execution_id=execution_id),
                    metadata=auth(tenant),
                    timeout=2,
                )
            ),
            await code_of(
                stub.ListExecutions(
                    execution_pb2.ListExecutionsRequest(page_size=10),
                    metadata=auth(tenant),
                    timeout=2,
                )
            ),
        ]
        if codes == [OK, OK]:
            return time.monotonic() - began, seen
        seen += [c for c in codes if c != OK]
        if time.monotonic() - began > patience:
            return time.monotonic() - began, seen
        await asyncio.sleep(0.1)


RECOVERY_BOUND = 15.0


@pytest.mark.timeout(300)
async def test_a_postgresql_restart_mid_run_answers_unavailable_and_loses_no_step(
    effects: Effects, machine_broker: str, tmp_path: Path
) -> None:
    require(private_postgres.unavailable_reason(), "a private PostgreSQL cluster")
    with private_cluster() as cluster, throwaway_database(cluster) as postgres:
        tenant = await create_tenant(postgres, "enterprise")  # 50 at once: all 30 run
        async with engine_stack(
            postgres,
            effects,
            tmp_path,
            broker=machine_broker,
            workers=[("--concurrency", "4")],
            extra_env=CLOCKS,
        ) as stack:

            def logs() -> str:
                return stack.logs() + "\n" + cluster.log_tail()

            gate = f"outage-{uuid.uuid4().hex[:8]}"
            document = two_calls(effects, hold=gate)
            workflow_id = await active_workflow(stack.channel, tenant, document)
            started = await asyncio.gather(
                *(start(stack.channel, tenant, workflow_id, {"n": n}) for n in range(30))
            )
            ids = [e.id for e in started]

            # Mid-run: every first call out and its step claimed (past its first checkpoint).
            ends = time.monotonic() + PATIENCE
            while await attempts_running(stack.database, tenant, ids) < len(ids):
                assert time.monotonic() < ends, f"the calls were not all under way\n{logs()}"
                await asyncio.sleep(0.05)

            # `pg_ctl restart -m fast`, its two halves apart (off the loop: the server runs on),
            # down for longer than a lease: no worker can renew one, none has stopped. The
            # calls end meanwhile, so their steps are recorded once it is back.
            await asyncio.to_thread(cluster.stop, "fast")
            down_at = time.monotonic()
            assert not await asyncio.to_thread(cluster.accepts)
            effects.release(gate)
            retried = f"outage-{uuid.uuid4().hex[:8]}"
            during = await calls_while_down(stack.channel, tenant, workflow_id, ids[0], retried)
            outage = float(CLOCKS["WFE_LEASE_SECONDS"]) + 1.0
            await asyncio.sleep(max(down_at + outage - time.monotonic(), 0.0))
            await asyncio.to_thread(cluster.start)
            took, meanwhile = await until_answering(stack.channel, tenant, ids[0], 30.0)
            logger.info("answering again %.2fs after the restart; meanwhile %s", took, meanwhile)

            # The start refused during the outage, retried as a client does: one execution.
            again = await start(stack.channel, tenant, workflow_id, {"n": -1}, request_id=retried)
            ids.append(again.id)
            try:
                finished = await wait_all_finished(stack.channel, tenant, ids, patience=PATIENCE)
            except AssertionError as stuck:
                report = await lease_report(stack.database, tenant, ids)
                raise AssertionError(f"{stuck}\n{report}\n{logs()}") from None

            # Every promise is checked before any is reported: one broken hides no other.
            broken = []
            if during != dict.fromkeys(during, UNAVAILABLE):
                broken.append(
                    f"codes while PostgreSQL was down (all should be UNAVAILABLE): {during}"
                )
            if took > RECOVERY_BOUND:
                broken.append(
                    f"calls failed for {took:.1f}s after PostgreSQL was back: {meanwhile}"
                )
            try:
                await assert_settled(stack.database, effects, tenant, finished, ["call", "notify"])
            except AssertionError as unsettled:
                broken.append(str(unsettled))
            async with stack.database.transaction(TenantId(tenant)) as session:
                made = await session.scalar(
                    select(func.count())
                    .select_from(Execution)
                    .where(Execution.request_id == retried)
                )
            if made != 1:
                broken.append(f"the start retried after the outage made {made} executions")
            if taken_over := await attempts_taken_over(stack.database, tenant, ids):
                broken.append(f"steps taken over though their workers ran on: {taken_over}")
            assert not broken, "\n".join(broken) + f"\n{logs()}"


async def attempts_running(database: TenantDatabase, tenant: str, ids: Sequence[str]) -> int:
    """How many step attempts of these executions are claimed and running."""
    attempts = await attempts_of(database, tenant, ids)
    return sum(1 for *_, status, _ in attempts if status == AttemptStatus.RUNNING)


async def attempts_taken_over(
    database: TenantDatabase, tenant: str, ids: Sequence[str]
) -> list[str]:
    """The step attempts of these executions claimed more than once."""
    attempts = await attempts_of(database, tenant, ids)
    return [f"{e}/{s}: {claims} claims" for e, s, _, _, claims in attempts if claims > 1]


# --- 2. A step outlasts the broker's visibility timeout --------------------------------------


@dataclass
class TimedEffects(Effects):
    """The effects stub, also noting when each call began and was answered (wall clock)."""

    spans: list[tuple[str, float, float]] = field(default_factory=list)

    def spans_of(self, execution_id: str, step_id: str) -> list[tuple[float, float]]:
        with self.lock:
            return sorted(
                (began, ended)
                for key, began, ended in self.spans
                if key.startswith(f"{execution_id}:{step_id}:")
            )


class _TimedServer(_Server):
    effects: TimedEffects


class _TimedHandler(_Handler):
    server: _TimedServer

    def _handle(self) -> None:
        began = time.time()
        try:
            super()._handle()
        finally:
            key = self.headers.get("Idempotency-Key", "")
            with self.server.effects.lock:
                self.server.effects.spans.append((key, began, time.time()))


@contextmanager
def timed_effects() -> Iterator[TimedEffects]:
    server = _TimedServer(("127.0.0.1", 0), _TimedHandler)
    server.effects = TimedEffects(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.effects
    finally:
        server.shutdown()
        server.server_close()


def slow_step(effects: Effects, seconds: float) -> dict[str, Any]:
    """input -> quick (POST) -> slow (POST answered after `seconds`) -> done.

    `quick` first, so that `slow` is a task of its own on the broker (the entry's task
    runs the steps up to the first call ahead, in memory).
    """
    return workflow(
        step("input", "input", "quick", name="Input"),
        http("quick", "slow", effects.url(), method="POST", name="Quick"),
        http("slow", "done", effects.url(sleep=seconds), method="POST", name="Slow"),
        step("done", "output", name="Done", config={"values": {"key": "$.slow.body.key"}}),
    )


def overlapping(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Calls that began before the one before them was answered."""
    return [spans[n] for n in range(1, len(spans)) if spans[n][0] < spans[n - 1][1]]


VISIBILITY = 2
STEP_SECONDS = 6


@contextmanager
def redelivering_broker(kind: str, directory: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A broker of the test's own that hands a message out again while its step still runs
    (Redis past the visibility timeout, RabbitMQ past its consumer timeout): its URL and the
    settings that go with it. Private: either timeout this short would hand out again the
    unacknowledged messages of every other run on a shared broker."""
    if kind == "redis":
        require(None if shutil.which("redis-server") else "redis-server not installed", "Redis")
        with own_redis(directory) as redis_server:
            yield redis_server.url, {"WFE_BROKER_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY)}
    else:
        require(private_rabbitmq.unavailable_reason(), "a private RabbitMQ node")
        with private_rabbitmq.private_rabbitmq(directory / "rabbitmq", VISIBILITY * 1000) as url:
            yield url, {}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("broker_kind", ["redis", "rabbitmq"])
async def test_a_step_longer_than_the_brokers_redelivery_never_runs_twice_at_once(
    own_database: ThrowawayDatabase, tmp_path: Path, broker_kind: str
) -> None:
    tenant = await create_tenant(own_database, "enterprise")
    deliveries = tmp_path / "deliveries.txt"
    database = TenantDatabase(own_database.service_url, pool_size=2, max_overflow=2)
    with timed_effects() as effects, redelivering_broker(broker_kind, tmp_path) as broker:
        url, broker_settings = broker
        environment = {
            **CLOCKS,  # a lease (5 s) longer than the redelivery, shorter than the step
            **broker_settings,
            LOG_VARIABLE: str(deliveries),
        }
        try:
            async with serve_process(
                own_database, effects, tmp_path / "run", broker=url, extra_env=environment
            ) as (_, channel, processes):
                for _ in range(2):
                    start_module(
                        processes,
                        "tests.operations.recording_worker",
                        "worker",
                        "--concurrency",
                        "2",
                    )
                processes.beat()

                def logs() -> str:
                    return log_tails(tmp_path / "run")

                workflow_id = await active_workflow(
                    channel, tenant, slow_step(effects, STEP_SECONDS)
                )
                ids = [
                    e.id
                    for e in await asyncio.gather(
                        *(start(channel, tenant, workflow_id, {"n": n}) for n in range(4))
                    )
                ]
                try:
                    finished = await wait_all_finished(
                        channel, tenant, ids, patience=PATIENCE, diagnostics=logs
                    )
                except AssertionError as stuck:
                    report = await lease_report(database, tenant, ids)
                    raise AssertionError(f"{stuck}\n{report}") from None
                await assert_settled(database, effects, tenant, finished, ["quick", "slow"], logs)

                overlaps = {
                    i: overlapping(effects.spans_of(i, "slow"))
                    for i in ids
                    if overlapping(effects.spans_of(i, "slow"))
                }
                assert not overlaps, f"a step ran twice at once: {overlaps}\n{logs()}"

                # The broker did hand the slow step's message out again while it ran: the
                # same task id reached the engine twice (a sweeper's re-publish has a new id).
                seen = read_deliveries(deliveries)
                by_task: dict[tuple[str, str], list[float]] = defaultdict(list)
                for d in seen:
                    if d.step_id == "slow":
                        by_task[(d.execution_id, d.task_id)].append(d.at)
                again = {k: v for k, v in by_task.items() if len(v) > 1}
                assert again, f"no redelivery was provoked: {dict(by_task)}\n{logs()}"
                for (execution_id, _), times in again.items():
                    began, ended = effects.spans_of(execution_id, "slow")[0]
                    assert any(began < t < ended for t in times), (
                        "the redelivery did not come while the step ran"
                    )
                # Delivered twice, run once: one call, one attempt.
                for record in finished:
                    calls = effects.received[f"{record.id}:slow:1"]
                    assert calls == 1, f"the slow step of {record.id} was called {calls} times"
                    slow = next(s for s in record.steps if s.step_id == "slow")
                    assert slow.attempts == 1
        finally:
            await database.dispose()


# --- 3. A client's deadline around StartExecution --------------------------------------------


@dataclass
class Stack:
    port: int
    channel: aio.Channel
    database: TenantDatabase
    processes: Processes

    def logs(self) -> str:
        return log_tails(self.processes.log_dir)


@asynccontextmanager
async def addressable_stack(
    postgres: ThrowawayDatabase, effects: Effects, directory: Path, broker: str
) -> AsyncIterator[Stack]:
    """`engine_stack`, keeping the in-process server's port (for a second, blocking client)."""
    from workers.app import create_app
    from workers.publisher import BackgroundPublisher, CeleryPublisher

    settings = stack_settings(broker, effects)
    processes = Processes(
        {**engine_env(settings, postgres.service_url, directory), **CLOCKS}, directory
    )
    database = TenantDatabase(postgres.service_url, pool_size=5, max_overflow=5)
    publisher = BackgroundPublisher(CeleryPublisher(create_app(settings)))
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    running: RunningServer | None = None
    try:
        running = await start_server(settings, database, verifier, publisher)
        processes.worker("--concurrency", "4")
        processes.beat()
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield Stack(running.port, channel, database, processes)
    finally:
        if running is not None:
            await running.stop(0)
        publisher.close(timeout=2.0)
        processes.stop_all()
        with suppress(redis.RedisError):
            purge_queue(settings.broker_url, settings.queue_name)
            forget_unacked(settings.broker_url, settings.queue_name)
        await database.dispose()


def calling(effects: Effects) -> dict[str, Any]:
    """input -> call (POST) -> done."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http("call", "done", effects.url(), method="POST", name="Call"),
        step("done", "output", name="Done", config={"values": {"key": "$.call.body.key"}}),
    )


async def start_code(
    channel: aio.Channel, tenant: str, workflow_id: str, request_id: str, deadline: float
) -> tuple[grpc.StatusCode, str]:
    """StartExecution under a deadline of `deadline` seconds: its code and execution id."""
    request = execution_pb2.StartExecutionRequest(
        workflow_id=workflow_id, input=struct({"request": request_id}), request_id=request_id
    )
    try:
        answer = await executions(channel).StartExecution(
            request, metadata=auth(tenant), timeout=deadline
        )
    except aio.AioRpcError as error:
        return error.code(), ""
    return OK, answer.execution.id


async def made_for(database: TenantDatabase, tenant: str) -> dict[str, int]:
    """request_id -> executions stored with it, for the tenant."""
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.execute(
            select(Execution.request_id, func.count()).group_by(Execution.request_id)
        )
        return {str(request_id): int(n) for request_id, n in rows.all()}


@dataclass(frozen=True)
class Tried:
    """A start under a short deadline and its retry under a long one."""

    deadline: float
    request_id: str
    code: grpc.StatusCode
    first: str
    again: str


DEADLINES = (0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02, 0.03, 0.05, 0.1)
BURST = tuple(0.002 * n for n in range(1, 21))
"""The deadlines of starts sent at once: some reach the handler with no time left."""


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """request_id -> the time the call had left when StartExecution's handler began.

    Only watches: the handler is wrapped (before the server registers it) and called as is.
    """
    seen: dict[str, float] = {}
    original = ExecutionServicer.StartExecution

    async def watched(
        self: ExecutionServicer, request: execution_pb2.StartExecutionRequest, context: Any
    ) -> execution_pb2.StartExecutionResponse:
        left = context.time_remaining()
        seen.setdefault(request.request_id, 0.0 if left is None else float(left))
        return await original(self, request, context)

    monkeypatch.setattr(ExecutionServicer, "StartExecution", watched)
    return seen


@pytest.mark.timeout(240)
async def test_a_start_whose_deadline_expired_is_not_enqueued_twice(
    own_database: ThrowawayDatabase,
    effects: Effects,
    machine_broker: str,
    handled: dict[str, float],
    tmp_path: Path,
) -> None:
    tenant = await create_tenant(own_database, "enterprise")
    async with addressable_stack(own_database, effects, tmp_path, machine_broker) as stack:
        workflow_id = await active_workflow(stack.channel, tenant, calling(effects))

        async def start_then_retry(deadline: float) -> Tried:
            request_id = f"r-{uuid.uuid4().hex[:12]}"
            code, first = await start_code(stack.channel, tenant, workflow_id, request_id, deadline)
            # Retried at once, as a client does: the first may still be under way on the server.
            _, again = await start_code(stack.channel, tenant, workflow_id, request_id, 30)
            return Tried(deadline, request_id, code, first, again)

        tried = [
            *[await start_then_retry(d) for d in DEADLINES],  # one at a time
            *await asyncio.gather(*(start_then_retry(d) for d in DEADLINES)),  # all at once
        ]
        codes = {t.code for t in tried}
        assert codes <= {OK, DEADLINE_EXCEEDED}, [(t.deadline, t.code) for t in tried]
        assert DEADLINE_EXCEEDED in codes, "no deadline ran out: the test tried nothing"
        for t in tried:
            assert t.again, f"the retry of {t.request_id} failed"
            if t.code == OK:
                assert t.again == t.first, f"{t.request_id}: the retry started another execution"

        # Calls never retried, sent in bursts until the server has begun some of them with
        # their deadline already gone (the handler runs; its client has given up).
        late: dict[str, grpc.StatusCode] = {}
        for _ in range(20):
            burst = [f"late-{uuid.uuid4().hex[:12]}" for _ in BURST]
            answers = await asyncio.gather(
                *(
                    start_code(stack.channel, tenant, workflow_id, r, d)
                    for r, d in zip(burst, BURST, strict=True)
                )
            )
            late |= {
                r: code
                for r, (code, _) in zip(burst, answers, strict=True)
                if handled.get(r, 1.0) <= 0
            }
            if late:
                break
        assert late, f"no start reached the server after its deadline: {handled}"
        # A later start of the tenant goes after any batch of its begun before it: once it is
        # answered, whatever those calls were going to store is stored.
        code, _ = await start_code(stack.channel, tenant, workflow_id, "after", 30)
        assert code == OK

        ids = [t.again for t in tried]
        try:
            finished = await wait_all_finished(stack.channel, tenant, ids, patience=PATIENCE)
        except AssertionError as stuck:
            report = await lease_report(stack.database, tenant, ids)
            raise AssertionError(f"{stuck}\n{report}\n{stack.logs()}") from None
        made = await made_for(stack.database, tenant)
        assert {t.request_id: made.get(t.request_id, 0) for t in tried} == {
            t.request_id: 1 for t in tried
        }
        assert len(set(ids)) == len(tried)
        await assert_settled(stack.database, effects, tenant, finished, ["call"], stack.logs)
        stored = {r: made[r] for r in late if r in made}
        assert not stored, (
            f"starts begun after their deadline (answered {set(late.values())}) were stored "
            f"and run anyway: {stored} of {len(late)}"
        )
