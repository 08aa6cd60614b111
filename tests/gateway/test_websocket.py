"""The WebSocket `/api/workflows/ws` over a real gateway and server, with a real client.

Seed 004's protocol: credentials in the first message (or the upgrade's headers), topics
subscribed and unsubscribed, events in the seed's JSON with their `event_id`, `ping`
answered by `pong`, and refusals as an `error` message followed by the README's close code.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from grpc import aio
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from cli import web
from engine.dispatch import Publisher
from foundation.settings import GatewaySettings
from persistence.models import Event
from service.server import RunningServer, start_server
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, NewTenant, server_settings, token
from tests.execution_helpers import (
    active_workflow,
    eventually,
    executions,
    start,
    step,
    three_steps,
    transform,
    wait_until,
    workflow,
)
from tests.gateway.conftest import Gateway
from tests.service.test_streams import calls_since, long_workflow
from wfe.v1 import execution_pb2

PATH = "/api/workflows/ws"
COMPLETED = "workflow_execution_completed"
Message = dict[str, Any]


def socket_url(base: str) -> str:
    return base.replace("http://", "ws://", 1) + PATH


@dataclass
class Socket:
    """A client's socket: what it sends, and what it receives in order."""

    connection: ClientConnection
    received: list[Message] = field(default_factory=list)

    async def send(self, **message: Any) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, patience: float = 30.0) -> Message:
        """The next message, heartbeats included."""
        message: Message = json.loads(await asyncio.wait_for(self.connection.recv(), patience))
        self.received.append(message)
        return message

    async def next(self, patience: float = 30.0) -> Message:
        """The next message that is not a heartbeat."""
        while (message := await self.receive(patience))["event"] == "heartbeat":
            pass
        return message

    async def events_until(self, done: Callable[[Message], bool]) -> list[Message]:
        """Events of the log (those with an `event_id`) up to and including the first `done`."""
        found: list[Message] = []
        while not found or not done(found[-1]):
            message = await self.next(60.0)
            if "event_id" in message:
                found.append(message)
        return found

    async def events(self, count: int) -> list[Message]:
        """The next `count` events of the log."""
        found: list[Message] = []
        while len(found) < count:
            if "event_id" in (message := await self.next(60.0)):
                found.append(message)
        return found

    async def heartbeat(self) -> None:
        """Waits for a heartbeat: the socket's stream is open on the server."""
        while (await self.receive())["event"] != "heartbeat":
            pass

    async def closing(self, patience: float = 30.0) -> tuple[int | None, list[Message]]:
        """The close code, and what came before it that was not a heartbeat."""
        before: list[Message] = []
        try:
            while True:
                message = await self.receive(patience)
                if message["event"] != "heartbeat":
                    before.append(message)
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), before

    async def authenticate(self, tenant: str, roles: list[str] | None = None) -> None:
        await self.send(action="authenticate", token=token([tenant], roles=roles), tenant_id=tenant)
        assert await self.next() == {"event": "authenticated", "tenant_id": tenant}


@asynccontextmanager
async def opened(
    base: str, headers: dict[str, str] | None = None, receive_buffer: int | None = None
) -> AsyncIterator[Socket]:
    """A socket to the gateway at `base`; with `receive_buffer`, the client's kernel holds
    at most that many bytes it has not read (else it grows its buffer as it likes)."""
    url = socket_url(base)
    if receive_buffer is None:
        async with connect(url, additional_headers=headers, open_timeout=30) as c:
            yield Socket(c)
        return
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    tcp.setblocking(False)
    host, port = urlsplit(url).netloc.split(":")
    await asyncio.get_running_loop().sock_connect(tcp, (host, int(port)))
    async with connect(url, sock=tcp, additional_headers=headers, open_timeout=30) as c:
        yield Socket(c)


@asynccontextmanager
async def following(
    base: str,
    tenant: str,
    topics: list[str],
    after: int | None = 0,
    roles: list[str] | None = None,
    receive_buffer: int | None = None,
) -> AsyncIterator[Socket]:
    """An authenticated socket subscribed to `topics` (from `after`), its ack read."""
    async with opened(base, receive_buffer=receive_buffer) as client:
        await client.authenticate(tenant, roles)
        await client.send(action="subscribe", topics=topics, after_event_id=after)
        assert await client.next() == {"event": "subscribed", "topics": topics}
        yield client


def ends(message: Message) -> bool:
    return bool(message["event"] == COMPLETED)


def ids(found: list[Message]) -> list[int]:
    return [message["event_id"] for message in found]


def moment(text: str) -> datetime:
    """An ISO timestamp as a UTC moment, however it is written."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def test_a_token_for_another_tenant_is_refused_with_4403(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    mine, other = await new_tenant(), await new_tenant()
    async with opened(gateway.url) as socket:
        await socket.send(action="authenticate", token=token([mine]), tenant_id=other)
        code, before = await socket.closing()
    assert code == 4403
    [error] = before
    assert error["event"] == "error" and error["error"]["code"] == "permission_denied"
    assert set(error["error"]) == {"code", "message", "details", "request_id"}


async def test_a_tenant_that_does_not_exist_is_refused_with_4403(gateway: Gateway) -> None:
    missing = f"t-{uuid.uuid4().hex[:12]}"
    async with opened(gateway.url) as socket:
        await socket.send(action="authenticate", token=token([missing]), tenant_id=missing)
        code, before = await socket.closing()
    assert code == 4403
    assert [(m["event"], m["error"]["code"]) for m in before] == [("error", "permission_denied")]


FIRST_MESSAGES: dict[str, Callable[[str], Any]] = {
    "garbage token": lambda t: {"action": "authenticate", "token": "not-a-jwt", "tenant_id": t},
    "expired token": lambda t: {
        "action": "authenticate",
        "token": token([t], ttl_seconds=-3600),
        "tenant_id": t,
    },
    "no tenant_id": lambda t: {"action": "authenticate", "token": token([t])},
    "not authenticate first": lambda t: {"action": "subscribe", "topics": ["notifications"]},
    "not JSON": lambda t: "hello",
}


@pytest.mark.parametrize("first", FIRST_MESSAGES.values(), ids=FIRST_MESSAGES.keys())
async def test_missing_or_bad_credentials_are_refused_with_4401(
    gateway: Gateway, new_tenant: NewTenant, first: Callable[[str], Any]
) -> None:
    sent = first(await new_tenant())
    async with opened(gateway.url) as socket:
        await socket.connection.send(sent if isinstance(sent, str) else json.dumps(sent))
        code, before = await socket.closing()
    assert code == 4401
    assert [(m["event"], m["error"]["code"]) for m in before] == [("error", "unauthenticated")]


async def test_the_upgrades_headers_authenticate_the_socket(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant()
    granted = {"Authorization": f"Bearer {token([tenant])}", "X-Tenant-ID": tenant}
    async with opened(gateway.url, granted) as socket:
        assert await socket.next() == {"event": "authenticated", "tenant_id": tenant}
        await socket.send(action="ping", timestamp="2025-01-01T00:00:00Z")
        assert await socket.next() == {"event": "pong", "timestamp": "2025-01-01T00:00:00Z"}
    refused = {"Authorization": "Bearer nope", "X-Tenant-ID": tenant}
    async with opened(gateway.url, refused) as socket:
        code, before = await socket.closing()
    assert code == 4401 and before[0]["error"]["code"] == "unauthenticated"


async def test_tenant_wide_topics_without_the_admin_role_close_with_4403(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    async with opened(gateway.url) as socket:
        await socket.authenticate(tenant)
        await socket.send(action="subscribe", topics=["all_executions"])
        code, before = await socket.closing()
    assert code == 4403
    assert before[0] == {"event": "subscribed", "topics": ["all_executions"]}
    assert before[1]["error"]["code"] == "permission_denied"
    assert before[1]["error"]["details"]["topic"] == "all_executions"


async def test_streams_beyond_the_plans_cap_close_with_4429(
    gateway: Gateway, server: RunningServer, new_tenant: NewTenant
) -> None:
    tenant = TenantId(await new_tenant("enterprise", {"max_subscriptions": 1}))
    async with following(gateway.url, tenant, [f"workflow:{uuid.uuid4()}"], None) as first:
        await first.heartbeat()
        async with opened(gateway.url) as second:
            await second.authenticate(tenant)
            await second.send(action="subscribe", topics=["execution:x"])
            code, before = await second.closing()
        await first.send(action="ping")
        assert (await first.next())["event"] == "pong"  # the first one is not disturbed
    assert code == 4429
    assert before[1]["error"]["code"] == "tier_restriction"
    assert before[1]["error"]["details"]["quota"] == "max_subscriptions"


async def test_topics_beyond_the_plan_are_dropped_and_the_rest_followed(
    gateway: Gateway, channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """Free follows `execution:` topics only: the seed's monitor, which also asks for the
    workflow, is told so and still follows its execution (without step outputs)."""
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    started_ = await start(channel, tenant, workflow_id, {"name": "Ada"})
    topics = [f"execution:{started_.id}", f"workflow:{workflow_id}"]
    async with following(gateway.url, tenant, topics) as socket:
        error = await socket.next()
        assert error["event"] == "error" and error["error"]["code"] == "tier_restriction"
        assert await socket.next() == {"event": "subscribed", "topics": topics[:1]}
        found = await socket.events_until(ends)
    assert {m["execution_id"] for m in found} == {started_.id}
    assert found[-1]["status"] == "completed"
    assert all("output" not in m for m in found if m["event"] == "workflow_step_completed")


async def test_malformed_messages_are_invalid_input_and_the_socket_stays_open(
    gateway: Gateway, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    watched = f"workflow:{uuid.uuid4()}"
    async with following(gateway.url, tenant, [watched]) as socket:
        for sent in (
            "not json",
            "[1, 2]",
            json.dumps({"action": "dance"}),
            json.dumps({"action": "subscribe", "topics": "workflow:x"}),
            json.dumps({"action": "subscribe", "topics": ["workflow:x"], "after_event_id": -1}),
            json.dumps({"action": "unsubscribe"}),
        ):
            await socket.connection.send(sent)
            error = await socket.next()
            assert (error["event"], error["error"]["code"]) == ("error", "invalid_input"), sent
        await socket.connection.send(b"\x00binary")
        assert (await socket.next())["error"]["code"] == "invalid_input"
        # A topic the server finds malformed: refused, and the topics before it kept.
        await socket.send(action="subscribe", topics=["workflows"])
        assert await socket.next() == {"event": "subscribed", "topics": [watched, "workflows"]}
        error = await socket.next()
        assert error["error"]["code"] == "invalid_input"
        assert error["error"]["details"]["field_violations"][0]["field"] == "topics[1]"
        assert await socket.next() == {"event": "subscribed", "topics": [watched]}
        await socket.heartbeat()  # still followed
        await socket.send(action="ping", timestamp="t-1")
        assert await socket.next() == {"event": "pong", "timestamp": "t-1"}


async def test_events_are_the_stored_payloads_with_their_event_id(
    gateway: Gateway, channel: aio.Channel, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    """Each event an execution appends, as the WebSocket sends it, equals the payload in the
    events table plus its `event_id`: completed, failed (a log step given a number), logged
    and retried executions, and the workflow's own changes."""
    tenant = await new_tenant("enterprise")
    document = workflow(
        step("input", "input", "note", name="Input"),
        step(
            "note",
            "tool",
            "shape",
            name="Note",
            config={"tool": "log", "arguments": {"message": "$.input.note", "level": "info"}},
        ),
        transform("shape", "done", {"greeting": "$.input.note", "year": 2010}, name="Shape"),
        step("done", "output", name="Done", config={"values": {"greeting": "$.shape.greeting"}}),
    )
    workflow_id = await active_workflow(channel, tenant, document)
    topics = [f"workflow:{workflow_id}", "all_executions"]
    async with following(gateway.url, tenant, topics, 0, ["admin"]) as socket:
        fine = await start(channel, tenant, workflow_id, {"note": "hello"})
        broken = await start(channel, tenant, workflow_id, {"note": 5})
        found = await socket.events_until(lambda m: ends(m) and m["execution_id"] == broken.id)
        if not any(ends(m) and m["execution_id"] == fine.id for m in found):
            found += await socket.events_until(lambda m: ends(m) and m["execution_id"] == fine.id)
        await executions(channel).RetryExecution(
            execution_pb2.RetryExecutionRequest(execution_id=broken.id),
            metadata=(("authorization", f"Bearer {token([tenant])}"), ("x-tenant-id", tenant)),
        )
        found += await socket.events_until(lambda m: ends(m) and m["execution_id"] == broken.id)
    async with database.transaction(TenantId(tenant)) as session:
        rows = await session.scalars(select(Event).where(Event.type != "notification"))
        stored = {row.id: row.payload for row in rows.all()}
    assert ids(found) == sorted(stored)
    for message in found:
        payload = {**stored[message["event_id"]], "event_id": message["event_id"]}
        if message["event"] == "workflow_updated":  # stored as isoformat() gives it, sent with Z
            assert moment(message.pop("updated_at")) == moment(payload.pop("updated_at"))
        assert message == payload
    kinds = {m["event"] for m in found}
    assert kinds == {
        "workflow_updated",
        "workflow_execution_update",
        "workflow_step_completed",
        "workflow_execution_log",
        "workflow_step_failed",
        "workflow_execution_error",
        "workflow_execution_control",
        COMPLETED,
    }
    shaped = next(m for m in found if m.get("step_id") == "shape" and m.get("output"))
    assert shaped["output"] == {"greeting": "hello", "year": 2010}
    assert "2010.0" not in json.dumps(shaped)  # whole numbers go out whole


async def test_a_socket_that_reconnects_with_its_last_event_id_misses_nothing(
    gateway: Gateway, channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """A client whose socket drops every three events (no close handshake) and comes back
    with `after_event_id` receives what an uninterrupted socket receives: every event
    exactly once, in order."""
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, long_workflow(12))

    async def choppy() -> list[Message]:
        received: list[Message] = []
        while not received or not ends(received[-1]):
            after = received[-1]["event_id"] if received else 0
            async with following(gateway.url, tenant, ["all_executions"], after, ["admin"]) as s:
                for _ in range(3):
                    received += await s.events(1)
                    if ends(received[-1]):
                        break
                s.connection.transport.abort()  # the network goes away: no close frame
        return received

    async with following(gateway.url, tenant, ["all_executions"], 0, ["admin"]) as whole:
        reconnecting = asyncio.create_task(choppy())
        await start(channel, tenant, workflow_id, {})
        uninterrupted = await whole.events_until(ends)
    assert len(uninterrupted) == 2 + 2 * 14
    assert await reconnecting == uninterrupted


async def test_changing_topics_loses_and_repeats_nothing(
    gateway: Gateway, channel: aio.Channel, new_tenant: NewTenant
) -> None:
    """Subscribing and unsubscribing while events flow restarts the socket's stream after
    the last event it delivered."""
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, long_workflow(12))
    other = await active_workflow(channel, tenant, three_steps())
    async with (
        following(gateway.url, tenant, ["all_executions"], 0, ["admin"]) as whole,
        following(gateway.url, tenant, ["all_executions"], 0, ["admin"]) as changing,
    ):
        await start(channel, tenant, workflow_id, {})
        seen: list[Message] = []
        for change in ("subscribe", "unsubscribe", "subscribe", "unsubscribe"):
            seen += await changing.events(5)
            await changing.send(action=change, topics=[f"workflow:{other}"])
        seen += await changing.events_until(ends)
        while len(acks := [m for m in changing.received if "topics" in m]) < 5:
            await changing.next()
        uninterrupted = await whole.events_until(ends)
    assert seen == uninterrupted
    assert [(m["event"], len(m["topics"])) for m in acks] == [
        ("subscribed", 1),
        ("subscribed", 2),
        ("unsubscribed", 1),
        ("subscribed", 2),
        ("unsubscribed", 1),
    ]


async def test_closing_with_1000_ends_the_stream_and_leaves_no_task(
    gateway: Gateway, server: RunningServer, new_tenant: NewTenant
) -> None:
    tenant = TenantId(await new_tenant("enterprise"))
    await eventually(lambda: server.hub.registry.count(tenant) == 0, "no stream before")
    before = asyncio.all_tasks()
    async with following(gateway.url, tenant, [f"workflow:{uuid.uuid4()}"], None) as socket:
        await socket.heartbeat()
        assert server.hub.registry.count(tenant) == 1
        await socket.connection.close(1000)
    await eventually(lambda: server.hub.registry.count(tenant) == 0, "the stream cancelled")
    await eventually(lambda: not calls_since(before), "no task of the socket left")


async def test_a_server_going_away_closes_with_1012(
    database: TenantDatabase, engine: Publisher, new_tenant: NewTenant
) -> None:
    """UNAVAILABLE from a stopping server closes the socket as a restart, which the seed's
    client answers by reconnecting."""
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    running = await start_server(server_settings(), database, verifier, engine)
    values: dict[str, Any] = {"_env_file": None, "gateway_listen_address": "127.0.0.1:0"}
    settings = GatewaySettings(**values)
    front = await web.start(settings, f"127.0.0.1:{running.port}", grace=1.0)
    tenant = await new_tenant("enterprise")
    try:
        async with following(front.url, tenant, [f"workflow:{uuid.uuid4()}"], None) as socket:
            await socket.heartbeat()
            stopping = asyncio.create_task(running.stop(grace=5.0))
            code, before = await socket.closing()
            await asyncio.wait_for(stopping, 10)
    finally:
        await front.stop()
    assert code == 1012
    assert [m["error"]["code"] for m in before] == ["unavailable"]


async def test_without_after_event_id_a_socket_follows_from_now_on(
    gateway: Gateway, channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("enterprise")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    earlier = await start(channel, tenant, workflow_id, {"name": "Ada"})
    await wait_until(channel, tenant, earlier.id)
    async with following(gateway.url, tenant, ["all_executions"], None, ["admin"]) as socket:
        await socket.heartbeat()  # the stream is open: what commits now is in it
        later = await start(channel, tenant, workflow_id, {"name": "Lin"})
        found = await socket.events_until(ends)
    assert {m["execution_id"] for m in found} == {later.id}
    assert found[0]["event"] == "workflow_execution_update" and found[0]["status"] == "pending"
    assert found[-1]["output"] == {"greeting": "Lin"}
