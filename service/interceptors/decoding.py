"""Requests that cannot be decoded are refused as INVALID_ARGUMENT, like any bad input.

gRPC decodes a request before any handler or hook runs; a failure there (bad UTF-8 in
a string, a Struct nested past protobuf's depth limit, bytes that are no message at all)
would reach the client as UNKNOWN with the library's exception text. This interceptor,
innermost so authentication still comes first, swaps each method's deserializer for one
that turns any failure into a marker, and raises `InvalidInput` when the marker reaches
the method: the error interceptor then answers it like every other refusal. A request
whose text holds a NUL (no database column can store one) is refused the same way.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc
from google.protobuf.message import Message
from grpc import aio

from foundation.errors import FieldViolation, InvalidInput
from service import offload
from service.interceptors.text import first_nul

logger = logging.getLogger(__name__)

MESSAGE: Final = (
    "the request cannot be decoded as this method's request message "
    "(strings must be UTF-8, nesting at most 100 levels deep)"
)
NUL_MESSAGE: Final = "text may not contain the NUL character (U+0000): it cannot be stored"


class Undecodable:
    """Stands for a request that did not decode, or holds text that cannot be stored."""

    def __init__(self, message: str, field: str, problem: str) -> None:
        self.error = InvalidInput(message, violations=[FieldViolation(field, problem)])


UNDECODABLE: Final = Undecodable(MESSAGE, "request", "cannot be decoded")


class Unwalked:
    """A large request whose bytes hold a zero byte: its strings are walked off the loop."""

    def __init__(self, message: Message) -> None:
        self.message = message


def _holding_nul(where: str | None) -> Undecodable | None:
    return None if where is None else Undecodable(f"{where}: {NUL_MESSAGE}", where, NUL_MESSAGE)


async def admitted(request: object) -> object:
    """The request a method may see; raises for one that did not decode or holds a NUL."""
    if isinstance(request, Unwalked):
        refused = _holding_nul(await offload.run(first_nul, request.message))
        request = refused or request.message
    if isinstance(request, Undecodable):
        raise request.error
    return request


class DecodeGuardInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        guarded = handler._replace(
            request_deserializer=_guarded(handler.request_deserializer, method)
        )
        for kind in ("unary_unary", "unary_stream"):
            if getattr(handler, kind):
                return guarded._replace(**{kind: _checked(getattr(handler, kind))})
        for kind in ("stream_unary", "stream_stream"):
            if getattr(handler, kind):
                return guarded._replace(**{kind: _checked_stream(getattr(handler, kind))})
        return handler


def _guarded(deserializer: Callable[[bytes], Any], method: str) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        try:
            request = deserializer(raw)
        except Exception as error:  # any failure to decode is the sender's
            logger.info("%s: undecodable request (%s)", method, type(error).__name__)
            return UNDECODABLE
        if b"\x00" not in raw or not isinstance(request, Message):
            return request  # a NUL in a string is a zero byte on the wire
        if len(raw) > offload.INLINE_BYTES:
            return Unwalked(request)
        return _holding_nul(first_nul(request)) or request

    return deserialize


def _checked(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            async for response in behaviour(await admitted(request), context):
                yield response

        return stream

    async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        result = behaviour(await admitted(request), context)
        return await result if inspect.isawaitable(result) else result

    return call


def _checked_stream(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    async def checked(requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            yield await admitted(request)

    if inspect.isasyncgenfunction(behaviour):

        async def stream(
            requests: AsyncIterable[Any], context: aio.ServicerContext[Any, Any]
        ) -> Any:
            async for response in behaviour(checked(requests), context):
                yield response

        return stream

    async def call(requests: AsyncIterable[Any], context: aio.ServicerContext[Any, Any]) -> Any:
        result = behaviour(checked(requests), context)
        return await result if inspect.isawaitable(result) else result

    return call
