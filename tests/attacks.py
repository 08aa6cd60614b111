"""A corpus of hostile requests, kept as regression cases and replayed by the benchmark.

Each attack is one call of the real API: a definition with a remote `$ref`, a
catastrophic pattern, a 200,000-item `in [...]` list, NaN, nesting past every
decoder's limit, a body past the message limit, forged page tokens... The server must
answer each with a clear status (a refusal where one is listed) within `BOUND` seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from sqlalchemy import func, select

from persistence.models import Event, Execution, Workflow, WorkflowTemplate
from tenancy.context import TenantId
from tenancy.database import TenantDatabase
from tests.workflow_helpers import message
from wfe.v1 import execution_pb2, execution_pb2_grpc, workflow_pb2, workflow_pb2_grpc

BOUND = 5.0
"""Seconds within which any attack must be answered."""
REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.NOT_FOUND,
    }
)
NEVER = frozenset(
    {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
)
Metadata = tuple[tuple[str, str], ...]
WORKFLOWS = "/wfe.v1.WorkflowService/"
EXECUTIONS = "/wfe.v1.ExecutionService/"
EVIL_PATTERN = "^(a+)+$"
EVIL_INPUT = "a" * 50_000 + "!"


@dataclass(frozen=True)
class Targets:
    """What the attacks aim at in the attacker's own tenant (and a stranger's token)."""

    workflow_id: str
    """An active workflow with a hostile input schema, if the server took one (see below)."""
    foreign_page_token: str
    """A real next_page_token of ListExecutions, issued to another tenant."""


@dataclass(frozen=True)
class Attack:
    name: str
    method: str
    build: Callable[[Targets], Message]
    must_refuse: bool = True
    """False where a fast, clear answer of any kind will do (e.g. a linear-time regex)."""

    async def send(self, channel: aio.Channel, targets: Targets, metadata: Metadata) -> None:
        """Make the call; raises the AioRpcError of a refusal."""
        call = channel.unary_unary(self.method, request_serializer=_serialize)
        await call(self.build(targets), metadata=metadata, timeout=2 * BOUND)


def _serialize(request: Message) -> bytes:
    return bytes(request.SerializeToString())


def to_value(value: Any, into: struct_pb2.Value) -> None:
    """Python JSON to a Value by hand: `Struct.update` refuses NaN, and recurses deeply."""
    if value is None:
        into.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        into.bool_value = value
    elif isinstance(value, float | int):
        into.number_value = float(value)
    elif isinstance(value, str):
        into.string_value = value
    elif isinstance(value, list):
        into.list_value.SetInParent()
        for item in value:
            to_value(item, into.list_value.values.add())
    else:
        into.struct_value.SetInParent()
        for key, item in value.items():
            to_value(item, into.struct_value.fields[key])


def to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    return fill(struct_pb2.Struct(), value)


def fill(struct: struct_pb2.Struct, value: dict[str, Any]) -> struct_pb2.Struct:
    """Write `value` into `struct` in place: copying a message past 100 levels deep fails."""
    for key, item in value.items():
        to_value(item, struct.fields[key])
    return struct


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"k": value}
    return value


def branching(condition: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """input -> decide (one condition) -> yes | no."""
    return {
        "name": "Attack",
        "input_schema": schema or {"type": "object"},
        "steps": [
            {"id": "input", "type": "input", "name": "Input", "next": "decide"},
            {
                "id": "decide",
                "type": "condition",
                "name": "Decide",
                "config": {
                    "conditions": [{"condition": condition, "next": "yes"}],
                    "default": "no",
                },
            },
            {"id": "yes", "type": "output", "name": "Yes", "config": {"values": {"ok": True}}},
            {"id": "no", "type": "output", "name": "No", "config": {"values": {"ok": False}}},
        ],
    }


def pattern_schema(pattern: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"email": {"type": "string", "pattern": pattern}}}


def create(document: dict[str, Any], **replace: Any) -> Callable[[Targets], Message]:
    """CreateWorkflow of `document`, with `replace` put into the message's Structs as given."""

    def build(_: Targets) -> Message:
        request = workflow_pb2.CreateWorkflowRequest(workflow=message(document))
        for field, value in replace.items():
            getattr(request.workflow, field).Clear()
            fill(getattr(request.workflow, field), value)
        return request

    return build


def create_with_config(
    document: dict[str, Any], step: int, config: Any
) -> Callable[[Targets], Message]:
    def build(_: Targets) -> Message:
        workflow = message(document)
        workflow.steps[step].config.CopyFrom(to_struct(config))
        return workflow_pb2.CreateWorkflowRequest(workflow=workflow)

    return build


def start(value: dict[str, Any]) -> Callable[[Targets], Message]:
    def build(targets: Targets) -> Message:
        request = execution_pb2.StartExecutionRequest(workflow_id=targets.workflow_id)
        fill(request.input, value)
        return request

    return build


def list_executions(page_token: Callable[[Targets], str]) -> Callable[[Targets], Message]:
    return lambda targets: execution_pb2.ListExecutionsRequest(page_token=page_token(targets))


def with_timeout(document: dict[str, Any], seconds: int, nanos: int) -> Message:
    workflow = message(document)
    workflow.steps[1].timeout.CopyFrom(Duration(seconds=seconds, nanos=nanos))
    return workflow


def tampered(token: str, at: int | None = None) -> str:
    """`token` with one character changed (at `at`, wrapped; by default in the middle)."""
    index = len(token) // 2 if at is None else at % len(token)
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1 :]


PLAIN = branching("$.input.n > 1")
HUGE_LIST = "$.input.n in [" + ",".join(str(i) for i in range(200_000)) + "]"
LOOP_DEFS = {
    f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
    for i in range(40)
} | {"d40": {"type": "string", "pattern": EVIL_PATTERN}}

ATTACKS: tuple[Attack, ...] = (
    Attack(
        "remote $ref in the input schema",
        WORKFLOWS + "CreateWorkflow",
        create(branching("true", {"$ref": "https://attacker.example/schema.json"})),
    ),
    Attack(
        "file $ref in the input schema",
        WORKFLOWS + "CreateWorkflow",
        create(branching("true", {"$ref": "file:///etc/passwd"})),
    ),
    Attack(
        "remote $ref in ValidateWorkflow",
        WORKFLOWS + "ValidateWorkflow",
        lambda _: workflow_pb2.ValidateWorkflowRequest(
            workflow=message(branching("true", {"$ref": "http://169.254.169.254/latest"}))
        ),
        must_refuse=False,
    ),
    Attack(
        "$refs doubling 40 times (2^40 paths)",
        WORKFLOWS + "CreateWorkflow",
        create(branching("true", {"$defs": LOOP_DEFS, "$ref": "#/$defs/d0"})),
        must_refuse=False,
    ),
    Attack(
        "catastrophic pattern in the input schema",
        WORKFLOWS + "CreateWorkflow",
        create(branching("true", pattern_schema(EVIL_PATTERN))),
        must_refuse=False,
    ),
    Attack(
        "backreference pattern (not linear-time)",
        WORKFLOWS + "CreateWorkflow",
        create(branching("true", pattern_schema(r"^(a*)*\1$"))),
    ),
    Attack(
        "catastrophic pattern fed its worst input",
        EXECUTIONS + "StartExecution",
        start({"email": EVIL_INPUT}),
        must_refuse=False,
    ),
    Attack(
        "doubling $refs fed an input",
        EXECUTIONS + "StartExecution",
        start({"email": "a@b.c", "code": "a" * 10_000 + "!"}),
        must_refuse=False,
    ),
    Attack(
        "200,000-item `in [...]` list",
        WORKFLOWS + "CreateWorkflow",
        create(branching(HUGE_LIST)),
    ),
    Attack(
        "expression nested 10,000 parentheses deep",
        WORKFLOWS + "CreateWorkflow",
        create(branching("(" * 10_000 + "true" + ")" * 10_000)),
    ),
    Attack(
        "100,000 negations",
        WORKFLOWS + "CreateWorkflow",
        create(branching("!" * 100_000 + "true")),
    ),
    Attack(
        "input schema nested 30 levels (90 messages, under the decoder's limit)",
        WORKFLOWS + "CreateWorkflow",
        create(PLAIN, input_schema=nested(30)),
        must_refuse=False,
    ),
    Attack(
        "input nested past the protobuf decoder's limit",
        EXECUTIONS + "StartExecution",
        start(nested(200)),
    ),
    Attack(
        "NaN in the input",
        EXECUTIONS + "StartExecution",
        start({"email": "a@b.c", "n": math.nan}),
    ),
    Attack(
        "Infinity in a step's config",
        WORKFLOWS + "CreateWorkflow",
        create_with_config(PLAIN, 2, {"values": {"x": math.inf}}),
    ),
    Attack(
        "NaN in the input schema",
        WORKFLOWS + "CreateWorkflow",
        create(PLAIN, input_schema={"type": "object", "maximum": math.nan}),
    ),
    Attack(
        "3 MB input",
        EXECUTIONS + "StartExecution",
        start({"email": "x" * 3_000_000}),
    ),
    Attack(
        "body past the message size limit",
        EXECUTIONS + "StartExecution",
        start({"email": "x" * 5_000_000}),
    ),
    Attack(
        "a workflow of 20,000 steps",
        WORKFLOWS + "CreateWorkflow",
        create(
            {
                **PLAIN,
                "steps": [
                    {"id": "input", "type": "input", "name": "Input", "next": "s0"},
                    *(
                        {
                            "id": f"s{i}",
                            "type": "output" if i == 19_999 else "tool",
                            "name": f"S{i}",
                            **({} if i == 19_999 else {"next": f"s{i + 1}"}),
                            "config": (
                                {"values": {}}
                                if i == 19_999
                                else {"tool": "log", "arguments": {"message": "x"}}
                            ),
                        }
                        for i in range(20_000)
                    ),
                ],
            }
        ),
    ),
    Attack(
        "a page token from another tenant",
        EXECUTIONS + "ListExecutions",
        list_executions(lambda t: t.foreign_page_token),
    ),
    Attack(
        "a tampered page token",
        EXECUTIONS + "ListExecutions",
        list_executions(lambda t: tampered(t.foreign_page_token)),
    ),
    Attack(
        "a page token of garbage",
        EXECUTIONS + "ListExecutions",
        list_executions(lambda _: "not/a*token=="),
    ),
    Attack(
        "a 100,000-character page token",
        WORKFLOWS + "ListWorkflows",
        lambda _: workflow_pb2.ListWorkflowsRequest(page_token="A" * 100_000),
    ),
    Attack(
        "a negative page size",
        EXECUTIONS + "ListExecutions",
        lambda _: execution_pb2.ListExecutionsRequest(page_size=-1),
    ),
    Attack(
        "a Timestamp with negative nanos in a filter",
        EXECUTIONS + "ListExecutions",
        lambda _: execution_pb2.ListExecutionsRequest(created_after=Timestamp(nanos=-1)),
    ),
    Attack(
        "a Timestamp past year 9999 in a filter",
        EXECUTIONS + "ListExecutions",
        lambda _: execution_pb2.ListExecutionsRequest(created_before=Timestamp(seconds=2**62)),
    ),
    Attack(
        "a step timeout of 2^62 seconds and negative nanos",
        WORKFLOWS + "CreateWorkflow",
        lambda _: workflow_pb2.CreateWorkflowRequest(workflow=with_timeout(PLAIN, 2**62, -5)),
    ),
    Attack(
        "a NUL byte in an id",
        WORKFLOWS + "GetWorkflow",
        lambda _: workflow_pb2.GetWorkflowRequest(id="\x00"),
    ),
    Attack(
        "a NUL character in an input string (JSON in PostgreSQL cannot hold it)",
        EXECUTIONS + "StartExecution",
        start({"email": "a\x00@b.c"}),
    ),
    Attack(
        "a NUL character in an input key",
        EXECUTIONS + "StartExecution",
        start({"email": "a@b.c", "\x00": 1}),
    ),
)


async def page_token_of(channel: aio.Channel, other: Metadata) -> str:
    """A real next_page_token of ListExecutions, for the tenant of `other` (two executions)."""
    lent = await _active(channel, other, branching("true"))
    for _ in range(2):
        await _executions(channel).StartExecution(
            execution_pb2.StartExecutionRequest(workflow_id=lent, input=to_struct({})),
            metadata=other,
        )
    listed = await _executions(channel).ListExecutions(
        execution_pb2.ListExecutionsRequest(page_size=1), metadata=other
    )
    return str(listed.next_page_token)


async def pattern_workflow(channel: aio.Channel, own: Metadata) -> str:
    """An active workflow whose input schema is as hostile as the server lets it be.

    First choice: `EVIL_PATTERN` on `email` and the doubling `$ref`s on `code`; then the
    pattern alone; then a plain schema, if the server refuses both.
    """
    hostile = pattern_schema(EVIL_PATTERN)
    doubling = {
        **hostile,
        "$defs": LOOP_DEFS,
        "properties": {**hostile["properties"], "code": {"$ref": "#/$defs/d0"}},
    }
    for schema in (doubling, hostile):
        try:
            return await _active(channel, own, branching("true", schema))
        except grpc.RpcError:
            continue
    return await _active(channel, own, branching("true"))


async def _active(channel: aio.Channel, metadata: Metadata, document: dict[str, Any]) -> str:
    workflows = workflow_pb2_grpc.WorkflowServiceStub(channel)
    created = await workflows.CreateWorkflow(
        workflow_pb2.CreateWorkflowRequest(workflow=message(document)), metadata=metadata
    )
    await workflows.ActivateWorkflow(
        workflow_pb2.ActivateWorkflowRequest(id=created.workflow.id), metadata=metadata
    )
    return str(created.workflow.id)


def _executions(channel: aio.Channel) -> execution_pb2_grpc.ExecutionServiceStub:
    return execution_pb2_grpc.ExecutionServiceStub(channel)


async def stored(database: TenantDatabase, tenant: str) -> tuple[int, ...]:
    """How many workflows, executions, events and custom templates `tenant` has."""
    async with database.transaction(TenantId(tenant)) as session:
        return tuple(
            [
                await session.scalar(select(func.count()).select_from(model)) or 0
                for model in (Workflow, Execution, Event, WorkflowTemplate)
            ]
        )
