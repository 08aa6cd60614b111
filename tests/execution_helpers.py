"""Workflows and calls that execution tests share."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import json_format, struct_pb2
from grpc import aio
from sqlalchemy import select

from persistence.models import StepAttempt
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.conftest import auth
from tests.workflow_helpers import create, stub
from wfe.v1 import execution_pb2, execution_pb2_grpc, workflow_pb2

Status = execution_pb2.ExecutionStatus
TERMINAL = frozenset(
    {
        execution_pb2.EXECUTION_STATUS_COMPLETED,
        execution_pb2.EXECUTION_STATUS_FAILED,
        execution_pb2.EXECUTION_STATUS_CANCELLED,
    }
)


def executions(channel: aio.Channel) -> execution_pb2_grpc.ExecutionServiceStub:
    return execution_pb2_grpc.ExecutionServiceStub(channel)


def step(step_id: str, kind: str, following: str | None = None, **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"id": step_id, "type": kind, "name": fields.pop("name", step_id)}
    if following:
        document["next"] = following
    document.update(fields)
    return document


def transform(
    step_id: str, following: str | None, values: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    config = {"tool": "transform", "arguments": {"values": values}}
    return step(step_id, "tool", following, config=config, **kw)


def http(step_id: str, following: str | None, url: str, **kw: Any) -> dict[str, Any]:
    arguments = {"url": url, "method": kw.pop("method", "GET"), **kw.pop("arguments", {})}
    config = {"tool": "http_request", "arguments": arguments}
    return step(step_id, "tool", following, config=config, **kw)


def workflow(*steps: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": f"wf-{uuid.uuid4().hex[:8]}",
        "description": "",
        "input_schema": schema or {"type": "object"},
        "steps": list(steps),
    }


def three_steps() -> dict[str, Any]:
    """input -> shape (transform) -> done (output): the benchmark's no-op workflow."""
    return workflow(
        step("input", "input", "shape", name="Input"),
        transform("shape", "done", {"greeting": "$.input.name"}, name="Shape"),
        step("done", "output", name="Done", config={"values": {"greeting": "$.shape.greeting"}}),
    )


async def active_workflow(channel: aio.Channel, tenant: str, document: dict[str, Any]) -> str:
    created = await create(channel, tenant, document)
    await stub(channel).ActivateWorkflow(
        workflow_pb2.ActivateWorkflowRequest(id=created.id), metadata=auth(tenant)
    )
    return str(created.id)


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


async def start(
    channel: aio.Channel,
    tenant: str,
    workflow_id: str,
    value: dict[str, Any] | None = None,
    request_id: str = "",
) -> execution_pb2.Execution:
    request = execution_pb2.StartExecutionRequest(
        workflow_id=workflow_id, input=struct(value or {}), request_id=request_id
    )
    return (await executions(channel).StartExecution(request, metadata=auth(tenant))).execution


async def get(channel: aio.Channel, tenant: str, execution_id: str) -> execution_pb2.Execution:
    request = execution_pb2.GetExecutionRequest(execution_id=execution_id)
    return (await executions(channel).GetExecution(request, metadata=auth(tenant))).execution


async def wait_until(
    channel: aio.Channel,
    tenant: str,
    execution_id: str,
    statuses: frozenset[int] = TERMINAL,
    patience: float = 30.0,
    where: Callable[[execution_pb2.Execution], bool] = lambda _: True,
) -> execution_pb2.Execution:
    """Poll GetExecution, as the seed's clients do, until the status is one of `statuses`.

    `where` may ask more of the execution than its status, e.g. the step it is at.
    """
    ends = time.monotonic() + patience
    while True:
        execution = await get(channel, tenant, execution_id)
        if execution.status in statuses and where(execution):
            return execution
        if time.monotonic() > ends:
            raise AssertionError(
                f"execution {execution_id} still {Status.Name(execution.status)} "
                f"at {execution.current_step!r} after {patience}s"
            )
        await asyncio.sleep(0.05)


async def eventually(check: Callable[[], object], what: str, patience: float = 10.0) -> None:
    """Poll `check` until it holds: wait for the event itself, never for a fixed time. A
    check that has to read something (the database, the server) may be a coroutine."""
    ends = time.monotonic() + patience
    while not await _held(check()):
        if time.monotonic() > ends:
            raise AssertionError(f"{what}: not within {patience}s")
        await asyncio.sleep(0.05)


async def _held(result: object) -> bool:
    return bool(await result if inspect.isawaitable(result) else result)


def to_dict(message: Any) -> Any:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


async def attempts_of(
    database: TenantDatabase, tenant: str, execution_id: str, step_id: str
) -> Sequence[StepAttempt]:
    """A step's attempt rows, first attempt first, as the engine stored them."""
    async with database.transaction(TenantId(tenant)) as session:
        return (
            await session.scalars(
                select(StepAttempt)
                .where(StepAttempt.execution_id == execution_id, StepAttempt.step_id == step_id)
                .order_by(StepAttempt.attempt)
            )
        ).all()
