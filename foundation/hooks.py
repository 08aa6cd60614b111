"""Interceptors that run an async context manager around every call of a method.

grpc.aio interceptors only see the method's handler, not the call; this wraps the
handler's behaviour, whatever its kind (unary or streaming either way), so a hook can
set context variables, check credentials or translate errors inside the call itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Final

import grpc
from grpc import aio

Hook = Callable[[aio.ServicerContext[Any, Any]], AbstractAsyncContextManager[None]]


class HookInterceptor(aio.ServerInterceptor, ABC):  # type: ignore[misc]
    """Base for interceptors whose work is `hook(method, context)` around each call."""

    @abstractmethod
    def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AbstractAsyncContextManager[None]: ...

    def applies_to(self, method: str) -> bool:
        return True

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.applies_to(method):
            return handler
        return wrap_handler(handler, lambda context: self.hook(method, context))


class HookChain(aio.ServerInterceptor):  # type: ignore[misc]
    """Several hook interceptors as one: their hooks nest in the order given (the first
    outermost), exactly as the interceptors would, around one wrapping of the handler.

    Each wrapping of a streaming handler runs every step of the stream as a task of its
    own (see `_wrap_stream`); chained, a streamed response costs one task, not one per hook.
    """

    def __init__(self, *interceptors: HookInterceptor) -> None:
        self._interceptors = interceptors

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        chosen = [i for i in self._interceptors if i.applies_to(method)]
        if handler is None or not chosen:
            return handler

        @asynccontextmanager
        async def hooks(context: aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            async with AsyncExitStack() as stack:
                for interceptor in chosen:
                    await stack.enter_async_context(interceptor.hook(method, context))
                yield

        return wrap_handler(handler, hooks)


def wrap_handler(handler: grpc.RpcMethodHandler, hook: Hook) -> grpc.RpcMethodHandler:
    """A copy of `handler` whose behaviour runs inside `hook(context)`."""
    if handler.unary_unary:
        return handler._replace(unary_unary=_wrap_unary(handler.unary_unary, hook))
    if handler.stream_unary:
        return handler._replace(stream_unary=_wrap_unary(handler.stream_unary, hook))
    if handler.unary_stream:
        return handler._replace(unary_stream=_wrap_stream(handler.unary_stream, hook))
    if handler.stream_stream:
        return handler._replace(stream_stream=_wrap_stream(handler.stream_stream, hook))
    return handler


def _wrap_unary(behaviour: Callable[..., Any], hook: Hook) -> Callable[..., Any]:
    async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        async with hook(context):
            result = behaviour(request, context)
            return await result if inspect.isawaitable(result) else result

    return call


def _wrap_stream(behaviour: Callable[..., Any], hook: Hook) -> Callable[..., Any]:
    # A streaming handler either yields its responses or awaits context.write();
    # grpc refuses a mix, so the wrapper keeps the style of the handler it wraps.
    if not (inspect.isasyncgenfunction(behaviour) or inspect.isgeneratorfunction(behaviour)):
        return _wrap_unary(behaviour, hook)

    async def hooked(
        request: Any, context: aio.ServicerContext[Any, Any]
    ) -> AsyncGenerator[Any, None]:
        async with hook(context):
            responses = behaviour(request, context)
            if inspect.isasyncgen(responses):
                async for response in responses:
                    yield response
            else:
                for response in responses:
                    yield response

    async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        # When a client drops the call, grpc abandons this generator and the event loop
        # closes it later from a task of its own, in another Context, where a hook could
        # not reset the context variables it set. So every step of the hooked generator,
        # its close included, runs in the one Context the call began in.
        scope = contextvars.copy_context()
        stream = hooked(request, context)
        try:
            while (response := await _in(scope, _next(stream))) is not _END:
                yield response
        finally:
            await _in(scope, stream.aclose())

    return call


_END: Final = object()


async def _next(stream: AsyncIterator[Any]) -> Any:
    return await anext(stream, _END)


async def _in(scope: contextvars.Context, step: Coroutine[Any, Any, Any]) -> Any:
    """Run `step` as a task in `scope`; cancelling the caller cancels the step too."""
    return await asyncio.create_task(step, context=scope)
