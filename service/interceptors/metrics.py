"""Counts every call by method and status code, and times it (`foundation.metrics`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc import aio

from foundation.hooks import HookInterceptor
from foundation.metrics import metrics


def method_label(method: str) -> str:
    """`/wfe.v1.ExecutionService/StartExecution` as `ExecutionService/StartExecution`."""
    service, _, name = method.strip("/").rpartition("/")
    return f"{service.rpartition('.')[2]}/{name}"


def _code_of(context: aio.ServicerContext[Any, Any], default: grpc.StatusCode) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        for known in grpc.StatusCode:
            if known.value[0] == code:
                return str(known.name)
    return str(default.name)


class MetricsInterceptor(HookInterceptor):
    """The outermost hook: it sees the code the client will see, refusals included."""

    @asynccontextmanager
    async def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        label = method_label(method)
        began = time.perf_counter()
        code = grpc.StatusCode.OK.name
        try:
            yield
            code = _code_of(context, grpc.StatusCode.OK)
        except aio.AbortError:
            code = _code_of(context, grpc.StatusCode.UNKNOWN)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED.name
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN.name
            raise
        finally:
            families = metrics()
            families.rpc_requests.labels(method=label, code=code).inc()
            families.rpc_duration.labels(method=label).observe(time.perf_counter() - began)
