"""Live streams over a real server: Subscribe and WatchExecution, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

import grpc
import pytest
from grpc import aio

from engine import events
from engine.dispatch import Publisher
from service.server import RunningServer, start_server
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, NewTenant, auth, error_info, server_settings
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    eventually,
    executions,
    http,
    start,
    step,
    three_steps,
    transform,
    wait_until,
    workflow,
)
from tests.servicers.test_workflow_service import violations
from tests.stream_helpers import ids, next_event, read_events, read_until, subscribe, watch
from tests.workflow_helpers import create, definition, stub
from wfe.v1 import event_pb2, execution_pb2, workflow_pb2

COMPLETED = "workflow_execution_completed"
IN_PROGRESS = frozenset({execution_pb2.EXECUTION_STATUS_IN_PROGRESS})


def long_workflow(transforms: int) -> dict[str, Any]:
    """input -> t0 -> ... -> done: two events per step, one at the start and one at the end."""
    names = [f"t{i}" for i in range(transforms)]
    following = [*names[1:], "done"]
    return workflow(
        step("input", "input", names[0], name="Input"),
        *(
            transform(n, f, {"at": n}, name=n.upper())
            for n, f in zip(names, following, strict=True)
        ),
        step("done", "output", name="Done", config={"values": {"steps": transforms}}),
    )


def calls_since(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks started since `before` and still running, but grpc's waits for the next call."""
    return [
        task
        for task in asyncio.all_tasks() - before
        if not task.done() and "_request" not in task.get_coro().__qualname__
    ]


def ends(event: event_pb2.Event) -> bool:
    return event.type == COMPLETED


async def test_other_tenants_topics_receive_nothing(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """Another tenant's ids match what missing ids match: nothing, replayed or live. The
    other tenant's own change, made after all of the owner's, is the first it receives."""
    owner, other = await new_tenant("enterprise"), await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, owner, three_steps())
    running = subscribe(channel, owner, [f"workflow:{workflow_id}", "all_executions"], 0, ["admin"])
    started = await start(channel, owner, workflow_id, {"name": "A"})
    foreign = [f"workflow:{workflow_id}", f"execution:{started.id}", "all_workflows"]
    missing = [f"workflow:{uuid.uuid4()}", f"execution:{uuid.uuid4()}", "all_workflows"]
    streams = [subscribe(channel, other, topics, 0, ["admin"]) for topics in (foreign, missing)]
    await read_until(running, ends)  # the owner's execution, live
    fence = await create(channel, other, definition("fence"))
    for stream in streams:
        first = await next_event(stream)
        assert (first.type, first.workflow_id) == ("workflow_updated", fence.id)
        stream.cancel()
    running.cancel()


async def test_tenant_wide_topics_need_the_admin_role(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    for topic in ("all_workflows", "all_executions"):
        with pytest.raises(grpc.RpcError) as caught:
            await subscribe(channel, tenant, [topic, "workflow:w"]).read()
        code, reason, metadata = error_info(caught.value)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
        assert metadata["topic"] == topic and metadata["role"] == "admin"


@pytest.mark.parametrize(
    ("topics", "after", "field"),
    [
        ([], None, "topics"),
        (["workflows"], None, "topics[0]"),
        (["workflow:w", "execution:"], None, "topics[1]"),
        (["workflow:w"], -1, "after_event_id"),
    ],
)
async def test_malformed_subscriptions_are_invalid_input(
    channel: aio.Channel, new_tenant: NewTenant, topics: list[str], after: int | None, field: str
) -> None:
    tenant = await new_tenant()
    with pytest.raises(grpc.RpcError) as caught:
        await subscribe(channel, tenant, topics, after).read()
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert [name for name, _ in violations(caught.value)] == [field]


async def test_a_subscriber_follows_an_execution_live_in_the_seeds_payloads(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    changes = subscribe(channel, tenant, [f"workflow:{workflow_id}"], after=0)
    progress = subscribe(channel, tenant, ["all_executions"], roles=["admin"])
    started = await start(channel, tenant, workflow_id, {"name": "Ada"})
    found = await read_until(progress, ends)
    assert ids(found) == sorted(set(ids(found)))
    assert {e.execution_id for e in found} == {started.id}
    assert {e.workflow_id for e in found} == {workflow_id}
    kinds = [e.WhichOneof("payload") for e in found]
    assert kinds == [e.type for e in found]
    assert kinds[0] == "workflow_execution_update" and kinds[-1] == COMPLETED
    shaped = next(e for e in found if e.workflow_step_completed.step_id == "shape")
    assert shaped.workflow_step_completed.output.struct_value["greeting"] == "Ada"
    assert shaped.workflow_step_completed.next_step == "done"
    last = found[-1].workflow_execution_completed
    assert last.status == "completed" and last.output["greeting"] == "Ada"
    assert last.complete_time.ToDatetime() >= last.start_time.ToDatetime()
    # The workflow's own topic carries its changes, not its executions' progress.
    await stub(channel).ArchiveWorkflow(
        workflow_pb2.ArchiveWorkflowRequest(id=workflow_id), metadata=auth(tenant)
    )
    own = await read_events(changes, 3)
    assert [(e.workflow_updated.previous_status, e.workflow_updated.status) for e in own] == [
        ("", "draft"),
        ("draft", "active"),
        ("active", "archived"),
    ]
    assert own[1].event_id < found[0].event_id < found[-1].event_id < own[2].event_id
    changes.cancel()
    progress.cancel()


async def test_resuming_at_every_cut_point_gives_the_uninterrupted_sequence(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """A client that reconnects after every event, while the execution runs and after it
    ended, receives exactly what a client that never disconnected receives."""
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, long_workflow(22))
    whole = subscribe(channel, tenant, ["all_executions"], roles=["admin"])
    changes = subscribe(channel, tenant, ["all_workflows"], after=0, roles=["admin"])
    first = await next_event(changes)  # every event of the execution comes after this one
    changes.cancel()

    async def choppy() -> list[event_pb2.Event]:
        received: list[event_pb2.Event] = []
        while not received or not ends(received[-1]):
            after = received[-1].event_id if received else first.event_id
            stream = subscribe(channel, tenant, ["all_executions"], after, ["admin"])
            received.append(await next_event(stream))
            stream.cancel()
        return received

    reconnecting = asyncio.create_task(choppy())
    await start(channel, tenant, workflow_id, {})
    uninterrupted = await read_until(whole, ends)
    assert len(uninterrupted) == 50
    assert await reconnecting == uninterrupted
    for cut in range(len(uninterrupted)):
        after = uninterrupted[cut - 1].event_id if cut else first.event_id
        resumed = subscribe(channel, tenant, ["all_executions"], after=after, roles=["admin"])
        assert await read_events(resumed, len(uninterrupted) - cut) == uninterrupted[cut:]
        resumed.cancel()
    whole.cancel()


async def test_watching_a_finished_execution_sends_its_snapshot_and_ends(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    workflow_id = await active_workflow(channel, tenant, three_steps())
    finished = await wait_until(
        channel, tenant, (await start(channel, tenant, workflow_id, {"name": "B"})).id
    )
    [only] = await watch(channel, tenant, finished.id)
    assert only.snapshot == finished


async def test_watching_a_running_execution_sends_its_snapshot_then_its_events_to_the_end(
    channel: aio.Channel, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant()
    document = workflow(
        step("input", "input", "slow", name="Input"),
        http("slow", "done", effects.url(sleep=1)),
        step("done", "output", name="Done", config={"values": {"ok": True}}),
    )
    workflow_id = await active_workflow(channel, tenant, document)
    started = await start(channel, tenant, workflow_id)
    await wait_until(
        channel, tenant, started.id, IN_PROGRESS, where=lambda e: e.current_step == "slow"
    )
    answers = await watch(channel, tenant, started.id)
    snapshot, *rest = answers
    assert snapshot.snapshot.status == execution_pb2.EXECUTION_STATUS_IN_PROGRESS
    updates = [a.event for a in rest if a.event.type != "heartbeat"]
    assert [a.WhichOneof("update") for a in rest] == ["event"] * len(rest)
    assert [u.type for u in updates][-2:] == ["workflow_step_completed", COMPLETED]
    assert {u.execution_id for u in updates} == {started.id}
    assert updates[0].workflow_step_completed.step_id == "slow"  # the first change not shown
    assert updates[-1].workflow_execution_completed.output["ok"] is True


async def test_an_idle_stream_sends_heartbeats(channel: aio.Channel, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("enterprise")
    stream = subscribe(channel, tenant, [f"workflow:{uuid.uuid4()}"])
    for _ in range(2):
        answer = await asyncio.wait_for(stream.read(), 10)
        assert answer.event.WhichOneof("payload") == "heartbeat" and answer.event.event_id == 0
    stream.cancel()


async def test_a_cancelled_stream_leaves_no_subscription_or_task_behind(
    channel: aio.Channel, server: RunningServer, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    await eventually(lambda: server.hub.registry.count() == 0, "no stream open before")
    before = asyncio.all_tasks()
    streams = [subscribe(channel, tenant, [f"workflow:{workflow_id}"], after=0) for _ in range(5)]
    for stream in streams:
        await next_event(stream)  # a stream in flight, holding its creation event
    assert server.hub.registry.count(tenant) == 5
    for stream in streams:
        stream.cancel()
    await eventually(lambda: server.hub.registry.count() == 0, "every subscription removed")
    await eventually(lambda: not calls_since(before), "no task of the streams left")
    assert server.hub.registry.buffered() == 0


async def test_stopping_the_server_ends_streams_with_unavailable(
    database: TenantDatabase, engine: Publisher, new_tenant: NewTenant
) -> None:
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    running = await start_server(server_settings(), database, verifier, engine)
    tenant = await new_tenant("enterprise")
    async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        workflow_id = await active_workflow(channel, tenant, three_steps())
        stream = subscribe(channel, tenant, [f"workflow:{workflow_id}"], after=0)
        received = await read_events(stream, 2)  # created, activated: now it waits
        stopping = asyncio.create_task(running.stop(grace=5.0))
        with pytest.raises(grpc.RpcError) as caught:
            await next_event(stream)
        code, reason, _ = error_info(caught.value)
        assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE")
        await asyncio.wait_for(stopping, 10)
        with pytest.raises(grpc.RpcError):
            await executions(channel).GetExecution(
                execution_pb2.GetExecutionRequest(execution_id="x"),
                metadata=auth(tenant),
                timeout=2,
            )
    assert [e.workflow_updated.status for e in received] == ["draft", "active"]


IDLE_SECONDS = 30.0
LOAD = 10_000


@pytest.mark.slow
@pytest.mark.postgresql_only  # 30 s by its nature; the same hub serves both backends
async def test_a_subscriber_that_reads_nothing_keeps_memory_bounded_then_gets_every_event(
    channel: aio.Channel, server: RunningServer, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """It reads nothing for 30 s while 10,000 events are written: the server holds at most
    one buffer of events for it (the rest stays in the log), and it then receives all."""
    tenant = await new_tenant("enterprise")
    stream = subscribe(channel, tenant, ["execution:load"])
    assert (await stream.read()).event.WhichOneof("payload") == "heartbeat"  # subscribed
    began = time.monotonic()
    written: list[int] = []
    peak = 0
    for first in range(0, LOAD, 100):
        async with database.transaction(TenantId(tenant)) as session:
            rows = [
                events.record(
                    session,
                    "workflow_execution_log",
                    {"event": "workflow_execution_log", "step_id": "s", "message": f"line {n}"},
                    execution_id="load",
                )
                for n in range(first, first + 100)
            ]
            await session.flush()
            written += [row.id for row in rows]
        peak = max(peak, server.hub.registry.buffered())
    while time.monotonic() - began < IDLE_SECONDS:  # the client still reads nothing
        peak = max(peak, server.hub.registry.buffered())
        await asyncio.sleep(0.1)
    assert 0 < peak <= server_settings().stream_buffer_events
    received = await read_events(stream, LOAD, patience=60)
    assert ids(received) == written
    assert received[-1].workflow_execution_log.message == f"line {LOAD - 1}"
    stream.cancel()


class FreezingProxy:
    """A TCP relay whose network can vanish: once frozen it forwards nothing, closes nothing."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> FreezingProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    if not self.frozen:
                        sink.write(data)
                        await sink.drain()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.slow
async def test_keepalive_reaps_a_stream_whose_client_vanished(
    database: TenantDatabase, engine: Publisher, new_tenant: NewTenant
) -> None:
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    settings = server_settings(
        grpc_keepalive_time_seconds=1,
        grpc_keepalive_timeout_seconds=1,
        stream_heartbeat_seconds=600,
    )
    running = await start_server(settings, database, verifier, engine)
    tenant = await new_tenant("enterprise")
    try:
        async with (
            FreezingProxy(running.port) as proxy,
            aio.insecure_channel(f"127.0.0.1:{proxy.port}") as channel,
        ):
            stream = subscribe(channel, tenant, [f"workflow:{uuid.uuid4()}"])
            await eventually(lambda: running.hub.registry.count(tenant) == 1, "subscribed")
            proxy.frozen = True
            await eventually(
                lambda: running.hub.registry.count(tenant) == 0, "the stream reaped", patience=20
            )
            stream.cancel()
    finally:
        await running.stop(0)
