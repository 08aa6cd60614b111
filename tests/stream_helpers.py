"""Calls and readers that event stream tests share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from grpc import aio

from tests.conftest import auth
from tests.execution_helpers import executions
from wfe.v1 import event_pb2, event_pb2_grpc, execution_pb2

Stream = Any  # aio.UnaryStreamCall, whose type parameters the stubs do not carry


def events(channel: aio.Channel) -> event_pb2_grpc.EventServiceStub:
    return event_pb2_grpc.EventServiceStub(channel)


def subscribe(
    channel: aio.Channel,
    tenant: str,
    topics: list[str],
    after: int | None = None,
    roles: list[str] | None = None,
) -> Stream:
    request = event_pb2.SubscribeRequest(topics=topics)
    if after is not None:
        request.after_event_id = after
    return events(channel).Subscribe(request, metadata=auth(tenant, roles=roles))


async def next_event(stream: Stream, patience: float = 30.0) -> event_pb2.Event:
    """The stream's next event, skipping heartbeats; fails if the stream ends first."""
    async with asyncio.timeout(patience):
        while True:
            answer = await stream.read()
            assert answer is not aio.EOF, "the stream ended"
            event = answer.event
            if event.WhichOneof("payload") != "heartbeat":
                return event


async def read_events(stream: Stream, count: int, patience: float = 60.0) -> list[event_pb2.Event]:
    return [await next_event(stream, patience) for _ in range(count)]


async def read_until(
    stream: Stream, done: Callable[[event_pb2.Event], bool], patience: float = 60.0
) -> list[event_pb2.Event]:
    """Events up to and including the first for which `done` holds."""
    found = []
    while True:
        found.append(await next_event(stream, patience))
        if done(found[-1]):
            return found


async def watch(
    channel: aio.Channel, tenant: str, execution_id: str, patience: float = 60.0
) -> list[execution_pb2.WatchExecutionResponse]:
    """Every message of a WatchExecution call, to its end."""
    call = executions(channel).WatchExecution(
        execution_pb2.WatchExecutionRequest(execution_id=execution_id), metadata=auth(tenant)
    )
    async with asyncio.timeout(patience):
        return [answer async for answer in call]


def status_of(error: BaseException) -> grpc.StatusCode:
    assert isinstance(error, aio.AioRpcError), error
    return error.code()


def ids(found: list[event_pb2.Event]) -> list[int]:
    return [event.event_id for event in found]
