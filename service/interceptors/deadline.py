"""A call whose deadline has passed by the time it is handled is refused before any work:
its caller has given up, so whatever it would start would be started for no one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc import aio

from foundation.hooks import HookInterceptor


class DeadlineInterceptor(HookInterceptor):
    @asynccontextmanager
    async def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        left = context.time_remaining()
        if left is not None and left <= 0:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "the call's deadline passed before it was handled",
            )
        yield
