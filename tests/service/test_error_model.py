"""What a client sees when a handler fails: rich status, request id, nothing leaked."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status

from foundation.errors import STATUS_CODES, FieldViolation, InvalidInput, Reason, WorkflowNotFound
from service.interceptors import ErrorInterceptor, RequestIdInterceptor
from service.interceptors.request_id import RequestIdLogFilter, current_request_id
from tenancy.interceptor import AuthInterceptor
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, auth

SERVICE = "wfe.test.Probe"
LEAK = "SELECT secret FROM tenants WHERE id = 'other-tenant'"


async def fail_unexpectedly(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
    raise RuntimeError(LEAK)


async def refuse_input(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
    raise InvalidInput(
        "input is invalid",
        metadata={"field_count": 2},
        violations=[
            FieldViolation("input.amount", "must be positive"),
            FieldViolation("input.currency", "unknown"),
        ],
    )


async def echo_request_id(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
    logging.getLogger("wfe.test").warning("handling")
    return current_request_id().encode()


async def stream_then_fail(
    request: bytes, context: aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    yield b"first"
    raise WorkflowNotFound("workflow 'w-1' not found", metadata={"workflow_id": "w-1"})


@pytest.fixture(scope="module")
async def probe_channel() -> AsyncIterator[aio.Channel]:
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    server = aio.server(
        interceptors=[RequestIdInterceptor(), ErrorInterceptor(), AuthInterceptor(verifier)]
    )
    handlers = {
        "Fail": grpc.unary_unary_rpc_method_handler(fail_unexpectedly),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse_input),
        "Echo": grpc.unary_unary_rpc_method_handler(echo_request_id),
        "Stream": grpc.unary_stream_rpc_method_handler(stream_then_fail),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(0)


def call(channel: aio.Channel, method: str) -> Any:
    return channel.unary_unary(f"/{SERVICE}/{method}")


def details_of(error: aio.AioRpcError) -> dict[str, Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, Any] = {}
    for kind in (
        error_details_pb2.ErrorInfo,
        error_details_pb2.RequestInfo,
        error_details_pb2.BadRequest,
    ):
        for detail in status.details:
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.__name__] = message
    return found


async def test_unexpected_exception_is_internal_and_leaks_nothing(
    probe_channel: aio.Channel,
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await call(probe_channel, "Fail")(b"", metadata=auth("t-1"))
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "SELECT" not in (error.details() or "")
    assert "other-tenant" not in str(error.trailing_metadata())
    found = details_of(error)
    assert found["ErrorInfo"].reason == "INTERNAL"
    assert found["RequestInfo"].request_id


async def test_invalid_input_lists_every_field_violation(probe_channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await call(probe_channel, "Refuse")(b"", metadata=auth("t-1"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = details_of(caught.value)
    assert found["ErrorInfo"].reason == "INVALID_INPUT"
    assert found["ErrorInfo"].domain == "wfe"
    assert dict(found["ErrorInfo"].metadata) == {"field_count": "2"}
    assert [(v.field, v.description) for v in found["BadRequest"].field_violations] == [
        ("input.amount", "must be positive"),
        ("input.currency", "unknown"),
    ]


async def test_supplied_request_id_is_echoed_and_reported_in_errors(
    probe_channel: aio.Channel,
) -> None:
    metadata = (*auth("t-1"), ("x-request-id", "req-abc-123"))
    echoed = call(probe_channel, "Echo")(b"", metadata=metadata)
    assert await echoed == b"req-abc-123"
    assert ("x-request-id", "req-abc-123") in list(await echoed.initial_metadata())

    with pytest.raises(aio.AioRpcError) as caught:
        await call(probe_channel, "Refuse")(b"", metadata=metadata)
    assert details_of(caught.value)["RequestInfo"].request_id == "req-abc-123"


async def test_request_id_is_generated_when_absent_or_unusable(
    probe_channel: aio.Channel,
) -> None:
    generated = await call(probe_channel, "Echo")(b"", metadata=auth("t-1"))
    assert len(generated) == 36
    hostile = await call(probe_channel, "Echo")(
        b"", metadata=(*auth("t-1"), ("x-request-id", "a b;c" * 40))
    )
    assert len(hostile) == 36


async def test_auth_failures_also_carry_the_request_id(probe_channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await call(probe_channel, "Echo")(b"", metadata=(("x-request-id", "req-no-auth"),))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(caught.value)["RequestInfo"].request_id == "req-no-auth"


async def test_streaming_call_ends_with_the_domain_error(probe_channel: aio.Channel) -> None:
    stream = probe_channel.unary_stream(f"/{SERVICE}/Stream")(b"", metadata=auth("t-1"))
    received = []
    with pytest.raises(aio.AioRpcError) as caught:
        async for message in stream:
            received.append(message)
    assert received == [b"first"]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    info = details_of(caught.value)["ErrorInfo"]
    assert (info.reason, dict(info.metadata)) == ("WORKFLOW_NOT_FOUND", {"workflow_id": "w-1"})


async def test_log_lines_carry_the_request_id(
    probe_channel: aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdLogFilter())
    with caplog.at_level(logging.WARNING, logger="wfe.test"):
        await call(probe_channel, "Echo")(
            b"", metadata=(*auth("t-1"), ("x-request-id", "req-logged"))
        )
    assert [r.request_id for r in caplog.records if r.name == "wfe.test"] == ["req-logged"]


def test_every_reason_has_exactly_one_error_and_code() -> None:
    reasons = {cls.reason for cls in STATUS_CODES}
    assert reasons == set(Reason)
    assert STATUS_CODES[WorkflowNotFound] == grpc.StatusCode.NOT_FOUND
