"""A client that drops a streaming call leaves no error behind on the server."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from grpc import aio

from foundation.hooks import HookInterceptor
from service.interceptors import (
    DecodeGuardInterceptor,
    ErrorInterceptor,
    RequestIdInterceptor,
    current_request_id,
)
from tenancy.context import current_tenant
from tenancy.interceptor import AuthInterceptor
from tenancy.tokens import ClaimRules, SharedSecretVerifier
from tests.conftest import AUDIENCE, ISSUER, SECRET, auth

pytestmark = pytest.mark.integration  # a gRPC server of its own

SERVICE = "wfe.test.Streams"


class ExitSignal(HookInterceptor):
    """Outermost hook: its exit means every other hook of the call has exited too."""

    def __init__(self) -> None:
        self.exited = asyncio.Event()

    @asynccontextmanager
    async def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self.exited.set()


async def endless(request: bytes, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
    # Never awaiting between messages, it is suspended at a `yield` when the client goes:
    # grpc then abandons the generator instead of cancelling it.
    while True:
        yield f"{current_request_id()} {current_tenant()}".encode()


@pytest.fixture
async def streams() -> AsyncIterator[tuple[aio.Channel, ExitSignal]]:
    signal = ExitSignal()
    verifier = SharedSecretVerifier(SECRET, ClaimRules(ISSUER, AUDIENCE))
    server = aio.server(
        interceptors=[
            signal,
            RequestIdInterceptor(),
            ErrorInterceptor(),
            AuthInterceptor(verifier),
            DecodeGuardInterceptor(),
        ]
    )
    handlers = {"Endless": grpc.unary_stream_rpc_method_handler(endless)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, signal
    await server.stop(0)


async def test_dropping_a_stream_logs_no_error(
    streams: tuple[aio.Channel, ExitSignal], caplog: pytest.LogCaptureFixture
) -> None:
    channel, signal = streams
    call = channel.unary_stream(f"/{SERVICE}/Endless")(
        b"", metadata=(*auth("t-1"), ("x-request-id", "req-dropped"))
    )
    # Both messages see the call's request id and tenant: each step runs in its context.
    assert await call.read() == b"req-dropped t-1"
    assert await call.read() == b"req-dropped t-1"
    call.cancel()

    await asyncio.wait_for(signal.exited.wait(), timeout=10)
    # A task that died of an error reports it when it is collected.
    await asyncio.sleep(0)
    gc.collect()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
