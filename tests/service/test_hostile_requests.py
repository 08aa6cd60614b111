"""Hostile requests are refused as INVALID_ARGUMENT, never INTERNAL/UNKNOWN, storing nothing.

Undecodable bytes, NaN and Infinity in Structs, and forged page tokens, on every backend.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundation.errors import InvalidInput
from foundation.settings import Settings
from service.pagination import PageTokens, signing_key
from tenancy import TenantId
from tests.conftest import NewTenant, auth, error_info
from tests.execution_helpers import active_workflow, executions, three_steps
from tests.workflow_helpers import create, definition, message, stub
from wfe.v1 import execution_pb2, workflow_pb2

NON_FINITE = [math.nan, math.inf, -math.inf]
# What a leaked exception looks like: a class name, a module path, a trace, a file path.
LEAKS = re.compile(
    r"DecodeError|RecursionError|UnicodeDecodeError|Traceback|google\.protobuf|\.py\b"
)


def violations(error: grpc.RpcError) -> list[str]:
    assert isinstance(error, aio.AioRpcError)
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [v.field for v in bad.field_violations]
    return found


def length_delimited(field: int, content: bytes) -> bytes:
    """One length-delimited protobuf field, encoded by hand."""
    return _varint(field << 3 | 2) + _varint(len(content)) + content


def _varint(number: int) -> bytes:
    encoded = bytearray()
    while True:
        low, number = number & 0x7F, number >> 7
        encoded.append(low | (0x80 if number else 0))
        if not number:
            return bytes(encoded)


def nested_struct(depth: int) -> bytes:
    """A Struct `{"a": {"a": ... }}` nested `depth` levels, as bytes."""
    struct = b""
    for _ in range(depth):
        value = length_delimited(5, struct)  # Value.struct_value
        entry = length_delimited(1, b"a") + length_delimited(2, value)  # map entry
        struct = length_delimited(1, entry)  # Struct.fields
    return struct


RAW_REQUESTS = {
    "invalid UTF-8 in a string": (
        "/wfe.v1.ExecutionService/GetExecution",
        length_delimited(1, b"ex-\xff\xfe"),
    ),
    "a Struct nested 200 levels": (
        "/wfe.v1.ExecutionService/StartExecution",
        length_delimited(1, b"wf-1") + length_delimited(2, nested_struct(200)),
    ),
    "garbage bytes": ("/wfe.v1.WorkflowService/ListWorkflows", b"\xff\xff\xff\xff\x0f\x07"),
    "a truncated message": (
        "/wfe.v1.WorkflowService/CreateWorkflow",
        length_delimited(1, b"\x0a\x10short"),
    ),
}


@pytest.mark.parametrize("case", sorted(RAW_REQUESTS))
async def test_undecodable_request_is_invalid_argument_without_internals(
    channel: aio.Channel, new_tenant: NewTenant, case: str
) -> None:
    tenant = await new_tenant("free")
    method, raw = RAW_REQUESTS[case]
    call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=bytes)
    with pytest.raises(aio.AioRpcError) as caught:
        await call(raw, metadata=auth(tenant))
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert "decod" in (caught.value.details() or "")
    assert not LEAKS.search(caught.value.details() or "")
    listed = await executions(channel).ListExecutions(
        execution_pb2.ListExecutionsRequest(), metadata=auth(tenant)
    )
    assert list(listed.executions) == []


async def test_undecodable_request_without_credentials_is_unauthenticated(
    channel: aio.Channel,
) -> None:
    call = channel.unary_unary(
        "/wfe.v1.ExecutionService/GetExecution",
        request_serializer=lambda b: b,
        response_deserializer=bytes,
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await call(b"\xff\xff")
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("number", NON_FINITE, ids=str)
async def test_non_finite_input_is_refused_naming_where_it_is(
    channel: aio.Channel, new_tenant: NewTenant, number: float
) -> None:
    tenant = await new_tenant("free")
    workflow_id = await active_workflow(channel, tenant, three_steps())
    request = execution_pb2.StartExecutionRequest(workflow_id=workflow_id)
    request.input.update({"name": "x", "order": {"lines": [1, {"amount": 2}]}})
    request.input["order"]["lines"][1]["amount"] = number
    with pytest.raises(aio.AioRpcError) as caught:
        await executions(channel).StartExecution(request, metadata=auth(tenant))
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert violations(caught.value) == ["input.order.lines[1].amount"]
    listed = await executions(channel).ListExecutions(
        execution_pb2.ListExecutionsRequest(), metadata=auth(tenant)
    )
    assert list(listed.executions) == []


async def test_non_finite_input_patch_of_a_rerun_is_refused(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    request = execution_pb2.RerunExecutionRequest(execution_id="ex-any", from_step="input")
    request.input_patch["limit"] = math.inf
    with pytest.raises(aio.AioRpcError) as caught:
        await executions(channel).RerunExecution(request, metadata=auth(tenant))
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert violations(caught.value) == ["input_patch.limit"]


@pytest.mark.parametrize("method", ["CreateWorkflow", "UpdateWorkflow", "ValidateWorkflow"])
async def test_non_finite_values_in_a_definition_are_refused_naming_where_they_are(
    channel: aio.Channel, new_tenant: NewTenant, method: str
) -> None:
    tenant = await new_tenant("free")
    proposed = message(definition())
    proposed.input_schema["maximum"] = math.nan
    proposed.steps[1].config["arguments"]["timeout_seconds"] = -math.inf
    if method == "UpdateWorkflow":
        proposed.id = (await create(channel, tenant)).id
        request: Any = workflow_pb2.UpdateWorkflowRequest(workflow=proposed)
    elif method == "CreateWorkflow":
        request = workflow_pb2.CreateWorkflowRequest(workflow=proposed)
    else:
        request = workflow_pb2.ValidateWorkflowRequest(workflow=proposed)
    with pytest.raises(aio.AioRpcError) as caught:
        await getattr(stub(channel), method)(request, metadata=auth(tenant))
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_WORKFLOW_DEFINITION")
    assert sorted(violations(caught.value)) == [
        "workflow.input_schema.maximum",
        "workflow.steps[1].config.arguments.timeout_seconds",
    ]
    listed = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(), metadata=auth(tenant)
    )
    assert len(listed.workflows) == (1 if method == "UpdateWorkflow" else 0)
    assert all(w.version == 1 for w in listed.workflows)


async def test_non_finite_values_in_a_step_being_validated_are_refused(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant = await new_tenant("free")
    request = workflow_pb2.ValidateStepRequest(step=message(definition()).steps[1])
    request.context.input_schema["minimum"] = math.inf
    with pytest.raises(aio.AioRpcError) as caught:
        await stub(channel).ValidateStep(request, metadata=auth(tenant))
    assert error_info(caught.value)[1] == "INVALID_WORKFLOW_DEFINITION"
    assert violations(caught.value) == ["context.input_schema.minimum"]


async def two_page_listing(channel: aio.Channel, tenant: str) -> str:
    """The token of page two of the tenant's workflows (page size 1)."""
    for name in ("First", "Second"):
        await create(channel, tenant, definition(name))
    first = await stub(channel).ListWorkflows(
        workflow_pb2.ListWorkflowsRequest(page_size=1), metadata=auth(tenant)
    )
    assert first.next_page_token
    return str(first.next_page_token)


async def list_with(channel: aio.Channel, tenant: str, page_token: str, **filters: Any) -> Any:
    request = workflow_pb2.ListWorkflowsRequest(page_size=1, page_token=page_token, **filters)
    return await stub(channel).ListWorkflows(request, metadata=auth(tenant))


async def test_page_token_works_only_for_its_tenant_and_its_listing(
    channel: aio.Channel, new_tenant: NewTenant
) -> None:
    tenant, other = await new_tenant("free"), await new_tenant("free")
    page_token = await two_page_listing(channel, tenant)
    assert [w.name for w in (await list_with(channel, tenant, page_token)).workflows] == ["First"]
    refusals = [
        (other, page_token, {}),  # a foreign tenant
        (tenant, page_token, {"name_prefix": "F"}),  # another listing
        (tenant, page_token[:-3], {}),  # truncated
        (tenant, page_token + "A", {}),  # lengthened
        (tenant, page_token[:8] + ("B" if page_token[8] != "B" else "C") + page_token[9:], {}),
        (tenant, "eyJ0IjoidCIsImwiOiJ3b3JrZmxvd3M6OiIsImsiOltdfQ", {}),  # the old unsigned form
        (tenant, "not a token!", {}),
    ]
    for caller, forged, filters in refusals:
        with pytest.raises(aio.AioRpcError) as caught:
            await list_with(channel, caller, forged, **filters)
        assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
        assert violations(caught.value) == ["page_token"]


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_any_mutated_page_token_is_refused_as_invalid_argument(
    channel: aio.Channel, new_tenant: NewTenant, data: st.DataObject
) -> None:
    tenant = await new_tenant("free")
    page_token = await two_page_listing(channel, tenant)
    mutated = data.draw(mutations(page_token))
    with pytest.raises(aio.AioRpcError) as caught:
        await list_with(channel, tenant, mutated)
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")


@st.composite
def mutations(draw: st.DrawFn, token: str) -> str:
    """`token` changed in one way a client might: a character, a cut, an addition, a swap."""
    index = draw(st.integers(0, len(token) - 1))
    text = st.text(min_size=1, max_size=4)
    match draw(st.sampled_from(["replace", "cut", "insert", "append", "anything"])):
        case "replace":
            new = draw(st.characters().filter(lambda c: c != token[index]))
            mutated = token[:index] + new + token[index + 1 :]
        case "cut":
            mutated = token[:index] + token[index + draw(st.integers(1, 8)) :]
        case "insert":
            mutated = token[:index] + draw(text) + token[index:]
        case "append":
            mutated = token + draw(text)
        case _:
            mutated = draw(st.text(max_size=200).filter(bool))
    if mutated in ("", token):
        mutated = token + "A"
    return mutated


@settings(max_examples=500, deadline=None, database=None)
@given(
    key=st.lists(st.one_of(st.integers(), st.text(max_size=30)), max_size=3),
    data=st.data(),
)
def test_page_tokens_refuse_every_mutation_and_return_the_key_otherwise(
    key: list[Any], data: st.DataObject
) -> None:
    tokens = PageTokens(b"k" * 32)
    tenant = TenantId("t-1")
    issued = tokens.encode(tenant, "workflows::", key)
    assert tokens.decode(issued, tenant, "workflows::") == key
    mutated = data.draw(mutations(issued))
    with pytest.raises(InvalidInput):
        tokens.decode(mutated, tenant, "workflows::")
    with pytest.raises(InvalidInput):
        tokens.decode(issued, TenantId("t-2"), "workflows::")
    with pytest.raises(InvalidInput):
        PageTokens(b"o" * 32).decode(issued, tenant, "workflows::")


def test_servers_sharing_a_secret_or_a_data_dir_accept_each_others_tokens(
    tmp_path: Path,
) -> None:
    def key(**values: Any) -> bytes:
        return signing_key(Settings(_env_file=None, **values))  # type: ignore[call-arg]

    tenant = TenantId("t-1")
    issued = PageTokens(key(data_dir=tmp_path)).encode(tenant, "l", [1])
    assert PageTokens(key(data_dir=tmp_path)).decode(issued, tenant, "l") == [1]
    jwt = "j" * 40
    derived = PageTokens(key(jwt_secret=jwt, data_dir=tmp_path / "a"))
    issued = derived.encode(tenant, "l", [2])
    assert PageTokens(key(jwt_secret=jwt, data_dir=tmp_path / "b")).decode(issued, tenant, "l")
    assert key(jwt_secret=jwt) != jwt.encode()  # the JWT secret itself never signs tokens
    assert key(jwt_secret=jwt, page_token_secret="p" * 32) == b"p" * 32


async def test_streamed_requests_are_decoded_as_safely(channel: aio.Channel) -> None:
    method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    call = channel.stream_stream(
        method, request_serializer=lambda b: b, response_deserializer=bytes
    )
    listing = length_delimited(7, b"*")  # list_services
    answers = [answer async for answer in call(iter([listing]))]
    assert b"wfe.v1.ExecutionService" in answers[0]
    with pytest.raises(aio.AioRpcError) as caught:
        _ = [answer async for answer in call(iter([b"\xff\xff\xff"]))]
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")


async def test_an_unknown_view_is_refused(channel: aio.Channel, new_tenant: NewTenant) -> None:
    tenant = await new_tenant("free")
    with pytest.raises(aio.AioRpcError) as caught:
        await executions(channel).ListExecutions(
            execution_pb2.ListExecutionsRequest(view=99),  # type: ignore[arg-type]
            metadata=auth(tenant),
        )
    assert error_info(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT")
    assert violations(caught.value) == ["view"]
