"""A server span per call, joined to the caller's trace when its metadata carries one
(`traceparent`); installed only when traces are on (`foundation.tracing`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from grpc import aio

from foundation import tracing
from foundation.hooks import HookInterceptor
from service.interceptors.metrics import method_label


class TracingInterceptor(HookInterceptor):
    @asynccontextmanager
    async def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        service, _, name = method.strip("/").rpartition("/")
        metadata = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if key in ("traceparent", "tracestate") and isinstance(value, str)
        }
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        with tracing.span(
            method_label(method), carrier=metadata, kind="server", attributes=attributes
        ) as current:
            try:
                yield
            except BaseException as error:
                code = context.code()
                label = getattr(code, "name", None) or type(error).__name__
                tracing.fail(current, str(label))
                raise
