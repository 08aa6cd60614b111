"""Faults with real worker processes and a real broker: slower, never stranded, never twice.

Each test runs the production shape on PostgreSQL (gRPC server, `wfe worker` and
`wfe beat` processes, a Redis broker on a queue of its own), breaks one part of it
for real (SIGKILL a worker, crash the broker, SIGKILL the server before it
publishes, deliver every task twice) and then checks what a user relies on: every
execution completes, each external call's effect is applied once (one idempotency
key per step; the same key sent again is fine), and nothing is left running or
queued for a finished execution.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from grpc import aio

from tenancy.database import TenantDatabase
from tests.conftest import require
from tests.databases import ThrowawayDatabase
from tests.effects_stub import Effects
from tests.engine_stack import Processes
from tests.execution_helpers import (
    active_workflow,
    eventually,
    get,
    http,
    start,
    step,
    transform,
    workflow,
)
from tests.fault_harness import (
    DoublingPublisher,
    assert_settled,
    attempts_of,
    count_by_status,
    create_tenant,
    engine_stack,
    lease_report,
    leftovers,
    log_tails,
    own_redis,
    read_deliveries,
    serve_process,
    wait_all_finished,
)
from wfe.v1 import execution_pb2

pytestmark = pytest.mark.postgres

IN_PROGRESS = execution_pb2.STEP_STATUS_IN_PROGRESS
PENDING = execution_pb2.EXECUTION_STATUS_PENDING


@pytest.fixture
def redis_binary() -> None:
    require(None if shutil.which("redis-server") else "redis-server not installed", "redis-server")


def calling(effects: Effects, **query: Any) -> dict[str, Any]:
    """input -> call (POST to the external system) -> done (its idempotency key)."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http(
            "call",
            "done",
            effects.url(**query),
            method="POST",
            name="Call",
            arguments={"body": {"n": "$.input.n"}},
        ),
        step("done", "output", name="Done", config={"values": {"key": "$.call.body.key"}}),
    )


async def start_many(
    channel: aio.Channel, tenant: str, workflow_id: str, count: int, batch: int = 20
) -> list[str]:
    ids: list[str] = []
    for first in range(0, count, batch):
        started = await asyncio.gather(
            *(
                start(channel, tenant, workflow_id, {"n": n})
                for n in range(first, min(first + batch, count))
            )
        )
        ids += [e.id for e in started]
    return ids


async def wait_for_step_running(
    channel: aio.Channel, tenant: str, ids: Sequence[str], step_id: str, log_dir: Path
) -> None:
    """Until GetExecution shows `step_id` in progress in every execution."""
    ends = time.monotonic() + 30
    while True:
        records = await asyncio.gather(*(get(channel, tenant, i) for i in ids))
        running = [
            r
            for r in records
            if any(s.step_id == step_id and s.status == IN_PROGRESS for s in r.steps)
        ]
        if len(running) == len(ids):
            return
        if time.monotonic() > ends:
            raise AssertionError(
                f"only {len(running)} of {len(ids)} executions reached {step_id!r}\n"
                + log_tails(log_dir)
            )
        await asyncio.sleep(0.05)


@pytest.fixture
async def service_database(postgres: ThrowawayDatabase) -> AsyncIterator[TenantDatabase]:
    database = TenantDatabase(postgres.service_url, pool_size=2, max_overflow=2)
    yield database
    await database.dispose()


async def test_a_worker_killed_mid_step_delays_but_never_strands_executions(
    postgres: ThrowawayDatabase, effects: Effects, shared_broker: str, tmp_path: Path
) -> None:
    tenant = await create_tenant(postgres, "professional")
    async with engine_stack(
        postgres, effects, tmp_path, broker=shared_broker, workers=[("--concurrency", "4")]
    ) as stack:
        workflow_id = await active_workflow(stack.channel, tenant, calling(effects, sleep=4))
        ids = await start_many(stack.channel, tenant, workflow_id, 4)
        await wait_for_step_running(stack.channel, tenant, ids, "call", tmp_path)
        # Until every call is out (each answers after 4 s).
        calls = [f"{i}:call:1" for i in ids]
        await eventually(lambda: all(effects.received[c] for c in calls), "the calls went out")
        victim = next(iter(stack.workers))
        Processes.kill(victim)  # SIGKILL to the worker and its pool processes
        assert victim.poll() is not None
        interrupted = await count_by_status(stack.database, tenant, ids)
        assert interrupted == {"in_progress": 4}, "the calls finished before the kill"

        stack.worker("--concurrency", "4")
        try:
            # Lease (2 s) + a sweep + a worker's start + the 4 s call: about 10 s when idle.
            finished = await wait_all_finished(stack.channel, tenant, ids, patience=45)
        except AssertionError as stuck:
            report = await lease_report(stack.database, tenant, ids)
            raise AssertionError(f"{stuck}\n{report}\n{stack.logs()}") from None

        await assert_settled(stack.database, effects, tenant, finished, ["call"], stack.logs)
        attempts = await attempts_of(stack.database, tenant, ids)
        # The fresh worker took each interrupted attempt over (a second claim; a third when
        # a starved machine kept a live worker from renewing its 2 s lease) and ran it again
        # as the same attempt, so under the same idempotency key: one key per call, applied
        # once, and no retry counted against the step.
        claims = {e: n for e, s, _, _, n in attempts if s == "call"}
        assert not {e: n for e, n in claims.items() if n < 2}, "an attempt not taken over"
        for record in finished:
            key = f"{record.id}:call:1"
            assert effects.keys_of(record.id) == [key]
            assert record.result["key"] == key
            call = next(s for s in record.steps if s.step_id == "call")
            assert call.attempts == 1
        # Calls already on the wire when their worker died reached the external system,
        # and the re-run sent the same key again.
        sent_twice = [i for i in ids if effects.deliveries[f"{i}:call:1"] >= 2]
        assert sent_twice, {i: effects.deliveries[f"{i}:call:1"] for i in ids}


def lost_the_broker(log_dir: Path) -> bool:
    """Every worker said it lost its broker connection (or died of it, see below)."""
    logs = [path.read_text(errors="replace") for path in log_dir.glob("worker-*.log")]
    said = ("Connection to broker lost", "Unrecoverable error")
    return bool(logs) and all(any(words in log for words in said) for log in logs)


@pytest.mark.timeout(240)
async def test_a_broker_restart_during_100_executions_loses_none(
    postgres: ThrowawayDatabase, effects: Effects, redis_binary: None, tmp_path: Path
) -> None:
    tenant = await create_tenant(postgres, "professional")  # 10 at once, the rest queue
    with own_redis(tmp_path) as broker:
        async with engine_stack(
            postgres,
            effects,
            tmp_path,
            broker=broker.url,
            workers=[("--concurrency", "4"), ("--concurrency", "4")],
        ) as stack:
            workflow_id = await active_workflow(stack.channel, tenant, calling(effects, sleep=0.2))
            ids = await start_many(stack.channel, tenant, workflow_id, 100)

            ends = time.monotonic() + 60
            while (done := await count_by_status(stack.database, tenant, ids))["completed"] < 10:
                assert time.monotonic() < ends, (
                    f"no progress before the crash: {done}\n{stack.logs()}"
                )
                await asyncio.sleep(0.05)
            broker.crash()  # everything queued or unacknowledged in it is gone
            await eventually(lambda: lost_the_broker(stack.log_dir), "workers saw the crash")
            broker.start()
            assert done["completed"] <= 50, f"the crash came too late to be mid-run: {done}"

            # kombu's Redis transport can take a worker down with the connection
            # ("Unrecoverable error: AttributeError ... 'hostname'"); start it again, as
            # its supervisor would.
            finished = await wait_all_finished(
                stack.channel,
                tenant,
                ids,
                patience=150,
                diagnostics=stack.logs,
                every_poll=stack.replace_exited_workers,
            )
            await assert_settled(stack.database, effects, tenant, finished, ["call"], stack.logs)
            assert [r.result["key"] for r in finished] == [f"{i}:call:1" for i in ids]


async def test_a_server_killed_between_commit_and_publish_loses_nothing(
    postgres: ThrowawayDatabase,
    effects: Effects,
    shared_broker: str,
    service_database: TenantDatabase,
    tmp_path: Path,
) -> None:
    tenant = await create_tenant(postgres, "professional")
    unreachable = "redis://127.0.0.1:1/0"  # nothing listens: every publish after commit fails
    server_logs = tmp_path / "server"
    async with serve_process(postgres, effects, server_logs, broker=unreachable) as (
        server,
        channel,
        _,
    ):
        workflow_id = await active_workflow(channel, tenant, calling(effects))
        started = [await start(channel, tenant, workflow_id, {"n": n}) for n in range(10)]
        assert {e.status for e in started} == {PENDING}
        ends = time.monotonic() + 30
        while "could not publish" not in log_tails(server_logs, 400):
            assert server.poll() is None and time.monotonic() < ends, log_tails(server_logs)
            await asyncio.sleep(0.1)
        Processes.kill(server)
    ids = [e.id for e in started]
    # Committed, never published: every execution waits on its first step's outbox row.
    assert await count_by_status(service_database, tenant, ids) == {"pending": 10}
    _, queued = await leftovers(service_database, tenant, ids)
    assert sorted((e, s) for e, s, _, _ in queued) == sorted((i, "input") for i in ids)

    async with engine_stack(postgres, effects, tmp_path / "engine", broker=shared_broker) as stack:
        finished = await wait_all_finished(
            stack.channel, tenant, ids, patience=60, diagnostics=stack.logs
        )
        await assert_settled(stack.database, effects, tenant, finished, ["call"], stack.logs)
        assert [r.result["key"] for r in finished] == [f"{i}:call:1" for i in ids]


def twice_calling(effects: Effects) -> dict[str, Any]:
    """input -> call (http) -> shape (transform) -> notify (http) -> done."""
    return workflow(
        step("input", "input", "call", name="Input"),
        http("call", "shape", effects.url(), method="POST", name="Call"),
        transform("shape", "notify", {"key": "$.call.body.key"}, name="Shape"),
        http(
            "notify",
            "done",
            effects.url(),
            method="POST",
            name="Notify",
            arguments={"body": {"about": "$.shape.key"}},
        ),
        step("done", "output", name="Done", config={"values": {"key": "$.notify.body.key"}}),
    )


async def test_every_task_delivered_twice_applies_each_step_once(
    postgres: ThrowawayDatabase, effects: Effects, shared_broker: str, tmp_path: Path
) -> None:
    tenant = await create_tenant(postgres, "professional")
    deliveries_log = tmp_path / "deliveries.txt"
    doubling: list[DoublingPublisher] = []

    def double(inner: Any) -> DoublingPublisher:
        doubling.append(DoublingPublisher(inner))
        return doubling[0]

    async with engine_stack(
        postgres,
        effects,
        tmp_path,
        broker=shared_broker,
        workers=[("--concurrency", "4")],
        worker_module="tests.doubling_worker",
        wrap_publisher=double,
        # No lease runs out here: long enough that a starved machine's live worker keeps
        # its own, and every attempt is claimed once.
        extra_env={"FAULTS_DELIVERY_LOG": str(deliveries_log), "WFE_LEASE_SECONDS": "10"},
    ) as stack:
        workflow_id = await active_workflow(stack.channel, tenant, twice_calling(effects))
        ids = await start_many(stack.channel, tenant, workflow_id, 10)
        finished = await wait_all_finished(
            stack.channel, tenant, ids, patience=60, diagnostics=stack.logs
        )
        steps = ["input", "call", "shape", "notify", "done"]
        # `shape` and `done` are inline: each runs in the task that recorded the call before
        # it (a chain), so no task names them; every other step's task came twice.
        expected = {(i, s, 1) for i in ids for s in ("input", "call", "notify")}
        ends = time.monotonic() + 20
        while True:
            seen = read_deliveries(deliveries_log)
            short = {k: seen[k] for k in expected if seen[k] < 2}
            if not short:
                break
            assert time.monotonic() < ends, f"tasks not delivered twice: {short}\n{stack.logs()}"
            await asyncio.sleep(0.1)

        await assert_settled(
            stack.database, effects, tenant, finished, ["call", "notify"], stack.logs
        )
        assert doubling[0].sent == 2 * len(ids)
        # A chain may also stop at its time budget on a busy machine and send an inline step
        # as a task of its own: delivered, then, but still attempt #1.
        assert {attempt for _, _, attempt in seen} == {1}, "an attempt other than #1 ran"
        assert expected <= set(seen)
        for record in finished:
            assert effects.keys_of(record.id) == [f"{record.id}:call:1", f"{record.id}:notify:1"]
            assert record.result["key"] == f"{record.id}:notify:1"
            assert {s.step_id: s.attempts for s in record.steps} == dict.fromkeys(steps, 1)
        attempts = await attempts_of(stack.database, tenant, ids)
        assert sorted((e, s, a, status, claims) for e, s, a, status, claims in attempts) == sorted(
            (i, s, 1, "completed", 1) for i in ids for s in steps
        )
