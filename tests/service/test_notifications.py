"""Notifications per user: made once per event, live on that user's stream only, listed, read."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from grpc import aio
from sqlalchemy import select, update

from engine.dispatch import Publisher
from engine.engine import Engine
from engine.feed import feed_for
from engine.notifications import StepDurations
from engine.tools import ToolRegistry
from persistence.models import Event, Notification
from service.notifications.projector import NotificationProjector
from service.server import RunningServer, start_server
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, NewTenant, error_info, server_settings, token
from tests.effects_stub import Effects
from tests.execution_helpers import (
    active_workflow,
    eventually,
    executions,
    http,
    step,
    struct,
    three_steps,
    wait_until,
    workflow,
)
from tests.stream_helpers import next_event
from wfe.v1 import event_pb2, event_pb2_grpc, execution_pb2, notification_pb2
from wfe.v1 import notification_pb2_grpc as notification_grpc

FAILED = frozenset({execution_pb2.EXECUTION_STATUS_FAILED})
COMPLETED = frozenset({execution_pb2.EXECUTION_STATUS_COMPLETED})


def as_user(tenant: str, user: str) -> tuple[tuple[str, str], ...]:
    return (
        ("authorization", f"Bearer {token([tenant], subject=user)}"),
        ("x-tenant-id", tenant),
    )


def inbox(channel: aio.Channel) -> notification_grpc.NotificationServiceStub:
    return notification_grpc.NotificationServiceStub(channel)


def notifications_of(channel: aio.Channel, tenant: str, user: str) -> Any:
    request = event_pb2.SubscribeRequest(topics=["notifications"])
    return event_pb2_grpc.EventServiceStub(channel).Subscribe(
        request, metadata=as_user(tenant, user)
    )


async def listed(
    channel: aio.Channel, tenant: str, user: str, **request: Any
) -> notification_pb2.ListNotificationsResponse:
    return await inbox(channel).ListNotifications(
        notification_pb2.ListNotificationsRequest(**request), metadata=as_user(tenant, user)
    )


async def start_as(
    channel: aio.Channel, tenant: str, user: str, workflow_id: str, value: dict[str, Any]
) -> execution_pb2.Execution:
    request = execution_pb2.StartExecutionRequest(workflow_id=workflow_id, input=struct(value))
    answer = await executions(channel).StartExecution(request, metadata=as_user(tenant, user))
    return answer.execution


def failing(effects: Effects) -> dict[str, Any]:
    return workflow(
        step("input", "input", "call", name="Input"),
        http("call", "done", effects.url(status=404), name="Call"),
        step("done", "output", name="Done", config={"values": {"ok": True}}),
    )


async def handled_up_to_now(server: RunningServer, database: TenantDatabase) -> None:
    """Wait until the server's notification handler has read every event committed so far.

    The horizon stops below any id still in flight (another test's writer, say), which may
    be older than the events just committed: it is taken once no writer is in flight.
    """
    feed = feed_for(database)
    try:
        horizon = await feed.horizon()
        ends = time.monotonic() + 10
        while feed.settling:
            assert time.monotonic() < ends, "the event log never settled"
            await asyncio.sleep(0.05)
            horizon = await feed.horizon()
    finally:
        await feed.close()
    await eventually(lambda: server.notifier.position >= horizon, "notifications handled")


async def test_a_failed_execution_notifies_the_user_who_started_it_live_and_no_one_else(
    channel: aio.Channel, server: RunningServer, new_tenant: NewTenant, effects: Effects
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, failing(effects))
    ada, bob = notifications_of(channel, tenant, "ada"), notifications_of(channel, tenant, "bob")
    started = await start_as(channel, tenant, "ada", workflow_id, {})
    event = await next_event(ada)
    assert event.type == "notification"
    note = event.notification
    assert (note.kind, note.execution_id, note.workflow_id) == (
        "execution_failed",
        started.id,
        workflow_id,
    )
    assert note.details["status"] == "failed" and note.id > 0
    # Bob's first notification is about his own execution, not Ada's.
    own = await start_as(channel, tenant, "bob", workflow_id, {})
    assert (await next_event(bob)).notification.execution_id == own.id
    [ada_listed] = (await listed(channel, tenant, "ada")).notifications
    assert (ada_listed.id, ada_listed.execution_id) == (note.id, started.id)
    assert [n.execution_id for n in (await listed(channel, tenant, "bob")).notifications] == [
        own.id
    ]
    # Another tenant's user of the same name sees none of it.
    other = await new_tenant("professional")
    assert not (await listed(channel, other, "ada")).notifications
    ada.cancel()
    bob.cancel()


async def test_handling_the_same_events_again_makes_no_second_notification(
    channel: aio.Channel,
    server: RunningServer,
    database: TenantDatabase,
    new_tenant: NewTenant,
    effects: Effects,
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, failing(effects))
    started = await start_as(channel, tenant, "ada", workflow_id, {})
    await wait_until(channel, tenant, started.id, FAILED)
    await handled_up_to_now(server, database)
    feed = feed_for(database)
    try:
        log = await feed.read(0, await feed.horizon(), [TenantId(tenant)], 10_000)
    finally:
        await feed.close()
    assert await server.notifier.handle(log) == 0  # the same events, handled again
    assert [n.kind for n in (await listed(channel, tenant, "ada")).notifications] == [
        "execution_failed"
    ]
    assert sum(e.type == "notification" for e in log) == 1


async def test_completed_executions_notify_only_users_who_opted_in(
    channel: aio.Channel, server: RunningServer, database: TenantDatabase, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("professional")
    service = inbox(channel)
    saved = await service.UpdateNotificationSettings(
        notification_pb2.UpdateNotificationSettingsRequest(
            settings=notification_pb2.NotificationSettings(on_completed=True)
        ),
        metadata=as_user(tenant, "ada"),
    )
    assert saved.settings.on_completed
    read_back = await service.GetNotificationSettings(
        notification_pb2.GetNotificationSettingsRequest(), metadata=as_user(tenant, "ada")
    )
    assert read_back.settings.on_completed
    workflow_id = await active_workflow(channel, tenant, three_steps())
    mine = await start_as(channel, tenant, "ada", workflow_id, {"name": "A"})
    theirs = await start_as(channel, tenant, "bob", workflow_id, {"name": "B"})
    for execution in (mine, theirs):
        await wait_until(channel, tenant, execution.id, COMPLETED)
    await handled_up_to_now(server, database)
    [note] = (await listed(channel, tenant, "ada")).notifications
    assert (note.kind, note.execution_id) == ("execution_completed", mine.id)
    assert not (await listed(channel, tenant, "bob")).notifications


async def test_a_step_slower_than_the_threshold_notifies_a_slow_execution(
    database: TenantDatabase, engine: Publisher, new_tenant: NewTenant, effects: Effects
) -> None:
    settings = server_settings(slow_step_seconds=0.5)
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    running = await start_server(settings, database, verifier, engine)
    tenant = await new_tenant("professional")
    try:
        async with aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            document = workflow(
                step("input", "input", "slow", name="Input"),
                http("slow", "done", effects.url(sleep=1), name="Slow call"),
                step("done", "output", name="Done", config={"values": {"ok": True}}),
            )
            workflow_id = await active_workflow(channel, tenant, document)
            stream = notifications_of(channel, tenant, "ada")
            started = await start_as(channel, tenant, "ada", workflow_id, {})
            note = (await next_event(stream)).notification
            stream.cancel()
    finally:
        await running.stop(0)
    assert (note.kind, note.execution_id) == ("slow_execution", started.id)
    assert note.details["step_id"] == "slow" and note.details["threshold_ms"] == 500
    assert note.details["duration_ms"] >= 1000
    assert "Slow call" in note.message


def test_a_run_far_above_its_own_p95_is_slow_and_a_usual_one_is_not() -> None:
    durations = StepDurations(threshold_ms=60_000, factor=3.0)
    key = ("t", "w", "s")
    for run in range(40):
        assert durations.slow(key, 100 + run % 10) is None
    assert durations.slow(key, 250) is None  # slower, but within 3 x its p95 (109 ms)
    assert durations.slow(key, 400) == {"p95_ms": 109, "factor": 3.0}
    assert durations.slow(("t", "w", "other"), 400) is None  # a new step has no pace yet
    assert durations.slow(("t", "w", "other"), 60_001) == {"threshold_ms": 60_000}


async def test_marking_read_touches_only_the_callers_notifications(
    channel: aio.Channel,
    server: RunningServer,
    database: TenantDatabase,
    new_tenant: NewTenant,
    effects: Effects,
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, failing(effects))
    for user in ("ada", "ada", "ada", "bob"):
        started = await start_as(channel, tenant, user, workflow_id, {})
        await wait_until(channel, tenant, started.id, FAILED)
    await handled_up_to_now(server, database)
    ada = await listed(channel, tenant, "ada")
    bob = await listed(channel, tenant, "bob")
    assert (ada.unread_count, bob.unread_count) == (3, 1)
    service = inbox(channel)
    first, *_ = ada.notifications
    marked = await service.MarkNotificationsRead(
        notification_pb2.MarkNotificationsReadRequest(ids=[first.id, bob.notifications[0].id]),
        metadata=as_user(tenant, "ada"),
    )
    assert marked.marked == 1  # Bob's id is not Ada's to mark
    unread = await listed(channel, tenant, "ada", unread_only=True)
    assert first.id not in [n.id for n in unread.notifications] and unread.unread_count == 2
    assert (await listed(channel, tenant, "bob")).unread_count == 1
    everything = await service.MarkNotificationsRead(
        notification_pb2.MarkNotificationsReadRequest(all=True), metadata=as_user(tenant, "ada")
    )
    assert everything.marked == 2
    read = (await listed(channel, tenant, "ada")).notifications
    assert all(n.HasField("read_time") for n in read) and len(read) == 3


async def test_pages_of_notifications_belong_to_their_user(
    channel: aio.Channel,
    server: RunningServer,
    database: TenantDatabase,
    new_tenant: NewTenant,
    effects: Effects,
) -> None:
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, failing(effects))
    for _ in range(3):
        started = await start_as(channel, tenant, "ada", workflow_id, {})
        await wait_until(channel, tenant, started.id, FAILED)
    await handled_up_to_now(server, database)
    pages, token_ = [], ""
    while True:
        page = await listed(channel, tenant, "ada", page_size=2, page_token=token_)
        pages.append([n.id for n in page.notifications])
        token_ = page.next_page_token
        if not token_:
            break
        with pytest.raises(grpc.RpcError) as caught:
            await listed(channel, tenant, "bob", page_size=2, page_token=token_)
        assert error_info(caught.value)[0] == grpc.StatusCode.INVALID_ARGUMENT
    ids = [i for page in pages for i in page]
    assert [len(page) for page in pages] == [2, 1] and ids == sorted(ids, reverse=True)


async def test_events_committed_while_no_handler_ran_are_notified_when_one_starts(
    channel: aio.Channel,
    server: RunningServer,
    database: TenantDatabase,
    new_tenant: NewTenant,
    effects: Effects,
) -> None:
    """The position is saved: a handler that starts later makes what the log called for."""
    await server.notifier.stop()
    tenant = await new_tenant("professional")
    workflow_id = await active_workflow(channel, tenant, failing(effects))
    started = await start_as(channel, tenant, "ada", workflow_id, {})
    await wait_until(channel, tenant, started.id, FAILED)
    assert not (await listed(channel, tenant, "ada")).notifications
    later = NotificationProjector(
        database, slow_step_seconds=300, slow_step_factor=3.0, poll_seconds=1.0
    )
    await later.start()
    try:
        await later.catch_up()
    finally:
        await later.stop()
    [note] = (await listed(channel, tenant, "ada")).notifications
    assert note.execution_id == started.id
    await server.notifier.start()  # the session's server goes on notifying


@pytest.mark.parametrize(
    "request_",
    [
        notification_pb2.MarkNotificationsReadRequest(),
        notification_pb2.MarkNotificationsReadRequest(ids=[1], all=True),
        notification_pb2.MarkNotificationsReadRequest(ids=list(range(1001))),
    ],
)
async def test_a_mark_request_names_ids_or_all(
    channel: aio.Channel, new_tenant: NewTenant, request_: Any
) -> None:
    tenant = await new_tenant()
    with pytest.raises(grpc.RpcError) as caught:
        await inbox(channel).MarkNotificationsRead(request_, metadata=as_user(tenant, "ada"))
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")


async def test_the_purge_removes_notifications_past_the_plans_retention(
    channel: aio.Channel,
    server: RunningServer,
    database: TenantDatabase,
    admin_database: TenantDatabase,
    new_tenant: NewTenant,
    effects: Effects,
) -> None:
    tenant = await new_tenant("free")  # keeps 7 days
    workflow_id = await active_workflow(channel, tenant, failing(effects))
    for _ in range(2):
        started = await start_as(channel, tenant, "ada", workflow_id, {})
        await wait_until(channel, tenant, started.id, FAILED)
    await handled_up_to_now(server, database)
    old, kept = (await listed(channel, tenant, "ada")).notifications[::-1]
    aged = datetime.now(UTC) - timedelta(days=10)
    async with admin_database.transaction(TenantId(tenant)) as session:
        await session.execute(
            update(Notification).where(Notification.id == old.id).values(created_at=aged)
        )
        await session.execute(
            update(Event)
            .where(
                Event.type == "notification",
                Event.payload["notification_id"].as_integer() == old.id,
            )
            .values(created_at=aged)
        )
    await Engine(database, ToolRegistry(server_settings()), server_settings()).purge()
    assert [n.id for n in (await listed(channel, tenant, "ada")).notifications] == [kept.id]
    async with database.transaction(TenantId(tenant)) as session:
        left = (
            await session.scalars(select(Event.payload).where(Event.type == "notification"))
        ).all()
    assert [p["notification_id"] for p in left] == [kept.id]
