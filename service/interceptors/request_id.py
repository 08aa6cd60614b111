"""Request ids: taken from `x-request-id` or generated, echoed back, and put in every log line."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from grpc import aio

from foundation.hooks import HookInterceptor

REQUEST_ID_HEADER = "x-request-id"
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_request_id: ContextVar[str] = ContextVar("wfe_request_id", default="-")


def current_request_id() -> str:
    """The id of the request being served ("-" outside any request)."""
    return _request_id.get()


class RequestIdInterceptor(HookInterceptor):
    """Binds the request id for the call and sends it back in the initial metadata."""

    @asynccontextmanager
    async def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        supplied = dict(context.invocation_metadata() or ()).get(REQUEST_ID_HEADER)
        request_id = supplied if isinstance(supplied, str) and _ACCEPTABLE.match(supplied) else None
        token = _request_id.set(request_id or str(uuid.uuid4()))
        try:
            await context.send_initial_metadata(((REQUEST_ID_HEADER, _request_id.get()),))
            yield
        finally:
            _request_id.reset(token)


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` to every log record, so the format can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True
