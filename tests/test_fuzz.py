"""Random requests for every RPC of `wfe.v1`, built field by field from the descriptors.

Whatever arrives (extreme numbers, NaN, huge or deep Structs, any text, forged page
tokens and ids, forged credentials), the server answers with a clear status before the
call's deadline: never INTERNAL or UNKNOWN, health stays SERVING, and a refused call
stores nothing.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import (
    descriptor,
    duration_pb2,
    field_mask_pb2,
    message_factory,
    struct_pb2,
    timestamp_pb2,
)
from google.protobuf.message import Message
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tenancy.database import TenantDatabase
from tests.attacks import nested, stored, tampered, to_struct
from tests.conftest import NewTenant, auth, error_info, token
from tests.execution_helpers import active_workflow, start, three_steps, wait_until
from tests.workflow_helpers import definition, message, stub
from wfe.v1 import event_pb2, execution_pb2, tenant_pb2, workflow_pb2

pytestmark = pytest.mark.slow

DEADLINE = 10.0
SERVICES = {
    service.full_name: service
    for module in (tenant_pb2, workflow_pb2, execution_pb2, event_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
}
FD = descriptor.FieldDescriptor
INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
STRANGE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "' OR 1=1 --",
    "../../etc/passwd",
    "$.input",
    "{{7*7}}",
    "\u202e\ufeff",
    "\U0001d518\U0001d52b\u0301\u200d",
]


@dataclass(frozen=True)
class Ids:
    """What an example may name: its own tenant's rows, a stranger's, tokens of either."""

    own: list[str]
    foreign: list[str]
    page_tokens: list[str]


def texts() -> st.SearchStrategy[str]:
    unicode = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
    long = st.sampled_from([10_000, 300_000]).map(lambda n: "x" * n)
    return unicode | st.sampled_from(STRANGE_TEXT) | long


def ids_of(ids: Ids) -> st.SearchStrategy[str]:
    return (
        st.sampled_from(ids.own + ids.foreign)
        | st.uuids().map(str)
        | texts()
        | st.integers().map(str)
    )


def page_tokens(ids: Ids) -> st.SearchStrategy[str]:
    forged = st.binary(max_size=300).map(lambda b: base64.urlsafe_b64encode(b).decode())
    changed = st.builds(tampered, st.sampled_from(ids.page_tokens), st.integers(0, 10_000))
    return st.sampled_from(ids.page_tokens) | forged | changed | texts()


def numbers() -> st.SearchStrategy[float]:
    extremes = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, -0.0, 5e-324])
    return st.floats() | extremes


json_leaves = st.none() | st.booleans() | numbers() | texts()
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts(), inner, max_size=5),
    max_leaves=30,
)


huge_json = st.one_of(
    st.integers(5, 100).map(nested),  # 3 message levels each: on both sides of protobuf's 100
    st.builds(lambda: [float(i) for i in range(100_000)]),
    st.builds(lambda: {f"k{i}": i for i in range(20_000)}),
)


def to_struct_value(value: Any) -> struct_pb2.Struct:
    return to_struct(value if isinstance(value, dict) else {"value": value})


def well_known(name: str) -> st.SearchStrategy[Message] | None:
    """Strategies for the google.protobuf types the API uses, extremes included."""
    any_json = json_values | huge_json
    seconds = st.integers(-(2**63), 2**63 - 1) | st.integers(-1000, 1000)
    nanos = st.integers(-(2**31), 2**31 - 1) | st.integers(0, 999_999_999)
    found: dict[str, st.SearchStrategy[Any]] = {
        "google.protobuf.Struct": any_json.map(to_struct_value),
        "google.protobuf.Value": any_json.map(lambda v: to_struct({"value": v}).fields["value"]),
        "google.protobuf.Duration": st.builds(duration, seconds, nanos),
        "google.protobuf.Timestamp": st.builds(timestamp, seconds, nanos),
        "google.protobuf.FieldMask": st.lists(texts(), max_size=4).map(field_mask),
    }
    return found.get(name)


def duration(seconds: int, nanos: int) -> Message:
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


def timestamp(seconds: int, nanos: int) -> Message:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def field_mask(paths: list[str]) -> Message:
    return field_mask_pb2.FieldMask(paths=paths)


def scalars(field: descriptor.FieldDescriptor, ids: Ids) -> st.SearchStrategy[Any]:
    if field.type in INT_RANGES:
        low, high = INT_RANGES[field.type]
        return st.integers(low, high) | st.sampled_from([low, high, 0, 1, -1 if low else 2])
    if field.type == FD.TYPE_DOUBLE:
        return numbers()
    if field.type == FD.TYPE_FLOAT:
        return st.floats(width=32) | st.sampled_from([math.nan, math.inf, -math.inf])
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type == FD.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.sampled_from(known) | st.integers(-(2**31), 2**31 - 1)
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.name == "page_token":
        return page_tokens(ids)
    if field.name in ("id", "next", "from_step") or field.name.endswith("_id"):
        return ids_of(ids)
    return texts()


def values_of(field: descriptor.FieldDescriptor, ids: Ids) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_MESSAGE:
        return messages(field.message_type, ids)
    return scalars(field, ids)


def messages(kind: descriptor.Descriptor, ids: Ids) -> st.SearchStrategy[Message]:
    """Any message of `kind`: each field absent or drawn from its type's strategy."""
    known = well_known(kind.full_name)
    return _messages(kind, ids) if known is None else known


@st.composite
def _messages(draw: st.DrawFn, kind: descriptor.Descriptor, ids: Ids) -> Message:
    built = message_factory.GetMessageClass(kind)()
    for field in kind.fields:
        if not draw(st.booleans()):
            continue
        target = getattr(built, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key_field, value_field = field.message_type.fields
            for key, value in draw(
                st.dictionaries(scalars(key_field, ids), values_of(value_field, ids), max_size=4)
            ).items():
                if value_field.type == FD.TYPE_MESSAGE:
                    target[key].CopyFrom(value)
                else:
                    target[key] = value
        elif field.is_repeated:
            items = draw(st.lists(values_of(field, ids), max_size=4))
            if field.type == FD.TYPE_MESSAGE:
                for item in items:
                    target.add().CopyFrom(item)
            else:
                target.extend(items)
        elif field.type == FD.TYPE_MESSAGE:
            target.CopyFrom(draw(values_of(field, ids)))
        else:
            setattr(built, field.name, draw(scalars(field, ids)))
    return built


@st.composite
def near_valid_workflows(draw: st.DrawFn, ids: Ids) -> Message:
    """A valid definition with one step's config (or the input schema) replaced by fuzz."""
    proposed = message(definition(extra_tools=draw(st.integers(0, 2))))
    target = draw(st.sampled_from(["config", "input_schema"]))
    fuzz = draw((json_values | huge_json).map(to_struct_value))
    if target == "config":
        proposed.steps[draw(st.integers(0, len(proposed.steps) - 1))].config.CopyFrom(fuzz)
    else:
        proposed.input_schema.CopyFrom(fuzz)
    return proposed


def requests(method: descriptor.MethodDescriptor, ids: Ids) -> st.SearchStrategy[Message]:
    random = messages(method.input_type, ids)
    workflow_field = method.input_type.fields_by_name.get("workflow")
    if workflow_field is None:
        return random

    def with_workflow(request: Message, workflow: Message) -> Message:
        request.workflow.CopyFrom(workflow)  # type: ignore[attr-defined]
        return request

    return random | st.builds(with_workflow, random, near_valid_workflows(ids))


CREDENTIALS: dict[str, Callable[[str, str], tuple[tuple[str, str], ...]]] = {
    "member": lambda tenant, other: auth(tenant),
    "admin": lambda tenant, other: auth(tenant, roles=["admin"]),
    "wrong signature": lambda tenant, other: (
        ("authorization", f"Bearer {token([tenant])[:-4]}AAAA"),
        ("x-tenant-id", tenant),
    ),
    "other tenant's token": lambda tenant, other: auth(tenant, bearer=token([other])),
    "no tenant header": lambda tenant, other: (("authorization", f"Bearer {token([tenant])}"),),
    "no token": lambda tenant, other: (("x-tenant-id", tenant),),
    "not a JWT": lambda tenant, other: auth(tenant, bearer="e30.e30.e30"),
}
FORGED = frozenset(CREDENTIALS) - {"member", "admin"}


@dataclass
class World:
    """A tenant that owns rows an example may name but never touches."""

    tenant: str
    workflow_ids: list[str]
    execution_id: str
    page_token: str


_worlds: dict[int, World] = {}


async def stranger(channel: aio.Channel, new_tenant: NewTenant) -> World:
    """One per server: built on first use, reused by every example."""
    key = id(channel)
    if key not in _worlds:
        tenant = await new_tenant("enterprise")
        workflows = [await active_workflow(channel, tenant, three_steps()) for _ in range(2)]
        execution = await start(channel, tenant, workflows[0], {"name": "x"})
        await wait_until(channel, tenant, execution.id)
        listed = await stub(channel).ListWorkflows(
            workflow_pb2.ListWorkflowsRequest(page_size=1), metadata=auth(tenant)
        )
        _worlds[key] = World(tenant, workflows, execution.id, listed.next_page_token)
    return _worlds[key]


async def first_answer(call: Any) -> None:
    """The answer of a unary call; of a stream (which may never end), its first message."""
    if isinstance(call, aio.UnaryStreamCall):
        try:
            await call.read()  # an event, a snapshot or a heartbeat, or the status
        finally:
            call.cancel()
    else:
        await call


async def serving(channel: aio.Channel) -> int:
    answer = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(answer.status)


@pytest.mark.parametrize("service", sorted(SERVICES))
@pytest.mark.postgresql_only  # the answers come from the servicers, the same on both backends
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_any_request_gets_a_clear_answer_in_time_and_a_refusal_stores_nothing(
    channel: aio.Channel,
    database: TenantDatabase,
    new_tenant: NewTenant,
    service: str,
    data: st.DataObject,
) -> None:
    world = await stranger(channel, new_tenant)
    tenant = await new_tenant(data.draw(st.sampled_from(["free", "professional", "enterprise"])))
    own = [await active_workflow(channel, tenant, three_steps())]
    if service == "wfe.v1.ExecutionService" and data.draw(st.booleans(), label="own execution"):
        execution = await start(channel, tenant, own[0], {"name": "x"})
        own.append((await wait_until(channel, tenant, execution.id)).id)  # no event comes later
    ids = Ids(own, [*world.workflow_ids, world.execution_id], [world.page_token])
    method = data.draw(st.sampled_from(list(SERVICES[service].methods)), label="method")
    request = data.draw(requests(method, ids), label="request")
    credentials = data.draw(st.sampled_from(sorted(CREDENTIALS)), label="credentials")
    event(f"{method.name} as {credentials}")
    path = f"/{service}/{method.name}"
    answer_type = message_factory.GetMessageClass(method.output_type)
    call = (channel.unary_stream if method.server_streaming else channel.unary_unary)(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=answer_type.FromString,
    )
    before = await stored(database, tenant)

    began = time.monotonic()
    try:
        await first_answer(
            call(request, metadata=CREDENTIALS[credentials](tenant, world.tenant), timeout=DEADLINE)
        )
    except aio.AioRpcError as error:
        code = error.code()
        event(f"{method.name}: {code.name}")
        what = f"{method.name} as {credentials}: {code.name} {error.details()!r}"
        assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), what
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:  # only the server's own TIMEOUT, in time
            assert error_info(error)[1] == "TIMEOUT", what
        if credentials in FORGED:
            assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        assert await stored(database, tenant) == before, f"{what} stored something"
    else:
        assert credentials not in FORGED, f"{method.name} accepted {credentials}"
    assert time.monotonic() - began < DEADLINE
    assert await serving(channel) == health_pb2.HealthCheckResponse.SERVING
