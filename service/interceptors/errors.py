"""Turns every exception a handler raises into a `google.rpc.Status` for the client.

A `WfeError` becomes its status code with ErrorInfo, RequestInfo and, for invalid
input, BadRequest details. Anything else is logged with the request id and answered
INTERNAL with a generic message: no trace, SQL or data of anyone leaks out.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

from foundation.errors import DOMAIN, WfeError
from foundation.hooks import HookInterceptor
from service.interceptors.request_id import current_request_id

logger = logging.getLogger(__name__)


class ErrorInterceptor(HookInterceptor):
    @asynccontextmanager
    async def hook(
        self, method: str, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[None]:
        try:
            yield
        except aio.AbortError:
            raise
        except WfeError as error:
            logger.info("%s refused: %s %s", method, error.reason, error.message)
            await _abort(context, error)
        except Exception:
            logger.exception("%s failed unexpectedly", method)
            await _abort(context, WfeError("internal error; quote the request id to support"))


def to_status(error: WfeError, request_id: str) -> status_pb2.Status:
    """The rich status a client receives for `error`."""
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    details = [info, error_details_pb2.RequestInfo(request_id=request_id)]
    if error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
        )
    packed = []
    for detail in details:
        envelope = any_pb2.Any()
        envelope.Pack(detail)
        packed.append(envelope)
    return status_pb2.Status(code=error.code.value[0], message=error.message, details=packed)


async def _abort(context: aio.ServicerContext[Any, Any], error: WfeError) -> None:
    status = rpc_status.to_status(to_status(error, current_request_id()))
    await context.abort(status.code, status.details, status.trailing_metadata)
