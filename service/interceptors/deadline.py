"""The caller's deadline: a call whose deadline has passed by the time it is handled is
refused before any work, and the work it queues (a batched start) can see when its caller
gives up (`expired`): whatever it would start would be started for no one."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import grpc
from grpc import aio

from foundation.hooks import HookInterceptor

_deadline: ContextVar[float | None] = ContextVar("wfe_deadline", default=None)


def current_deadline() -> float | None:
    """When the call being served expires, on `time.monotonic()`'s clock; None: never."""
    return _deadline.get()


def expired(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class DeadlineInterceptor(HookInterceptor):
    @asynccontextmanager
    async def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        left = context.time_remaining()
        if left is not None and left <= 0:
            message = "the call's deadline passed before it was handled"
            try:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, message)
            except aio.AbortError:
                raise
            except Exception:  # the call has ended already: the client saw its deadline pass
                raise aio.AbortError(message) from None
        token = _deadline.set(None if left is None else time.monotonic() + left)
        try:
            yield
        finally:
            _deadline.reset(token)
