"""Turns every exception a handler raises into a `google.rpc.Status` for the client.

A `WfeError` becomes its status code with ErrorInfo, RequestInfo and, for invalid
input, BadRequest details. Anything else is logged with the request id and answered
INTERNAL with a generic message: no trace, SQL or data of anyone leaks out.

The status travels in trailers, which clients refuse past their metadata limit (8 KiB
by default in gRPC), so a refusal of a huge request would otherwise arrive as a
RESOURCE_EXHAUSTED about metadata. Hence the budget: at most `max_violations` field
violations (the rest counted in `violations_omitted`), texts cut to `MAX_TEXT`, and
fewer violations still until the encoded status fits `budget` bytes. Texts are also
scrubbed of what library exceptions put in their messages (paths, class reprs, traces).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

from foundation.errors import DOMAIN, Unavailable, WfeError
from foundation.hooks import HookInterceptor
from foundation.outages import is_outage
from service.interceptors.request_id import current_request_id

logger = logging.getLogger(__name__)


MAX_TEXT: Final = 512
DEFAULT_MAX_VIOLATIONS: Final = 50
CLIENT_METADATA_LIMIT: Final = 8 * 1024  # gRPC clients' default soft limit
HEADROOM: Final = 1024  # grpc-status, content-type and other trailers
DEFAULT_BUDGET: Final = CLIENT_METADATA_LIMIT - HEADROOM
OMITTED: Final = "violations_omitted"
TRACEBACK: Final = re.compile(r"Traceback \(most recent call last\).*", re.DOTALL)
PATH: Final = re.compile(r"(?<![\w:/.])(?:/[\w.@~+-]+){2,}/?")
REPR: Final = re.compile(
    r"<(?:class|module|function|built-in \w+) '?[\w.]+'?[^>]*>| object at 0x[0-9a-f]+"
)


OUTAGE: Final = "the database is unavailable for a moment; call again shortly"


def details_budget(max_metadata_bytes: int) -> int:
    """Bytes an encoded status may take when the server's metadata limit is this."""
    return min(max_metadata_bytes, CLIENT_METADATA_LIMIT) - HEADROOM


class ErrorInterceptor(HookInterceptor):
    def __init__(
        self, *, max_violations: int = DEFAULT_MAX_VIOLATIONS, budget: int = DEFAULT_BUDGET
    ) -> None:
        self._max_violations = max_violations
        self._budget = budget

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
            await self._abort(context, error)
        except Exception as error:
            if is_outage(error):
                logger.warning("%s: the database is unavailable (%s)", method, type(error).__name__)
                await self._abort(context, Unavailable(OUTAGE))
                return
            logger.exception("%s failed unexpectedly", method)
            await self._abort(context, WfeError("internal error; quote the request id to support"))

    async def _abort(self, context: aio.ServicerContext[Any, Any], error: WfeError) -> None:
        built = to_status(error, current_request_id(), self._max_violations, self._budget)
        status = rpc_status.to_status(built)
        await context.abort(status.code, status.details, status.trailing_metadata)


def to_status(
    error: WfeError,
    request_id: str,
    max_violations: int = DEFAULT_MAX_VIOLATIONS,
    budget: int = DEFAULT_BUDGET,
) -> status_pb2.Status:
    """The rich status a client receives for `error`, encoded within `budget` bytes."""
    violations = [
        error_details_pb2.BadRequest.FieldViolation(
            field=scrub(v.field, MAX_TEXT), description=scrub(v.description, MAX_TEXT)
        )
        for v in error.violations[:max_violations]
    ]
    metadata = {key: scrub(value, MAX_TEXT) for key, value in error.metadata.items()}
    message = scrub(error.message, MAX_TEXT)
    status = _status(error, request_id, message, metadata, violations, len(error.violations))
    while _encoded_size(status) > budget and violations:
        del violations[len(violations) // 2 :]  # halve: a few rounds even from a thousand
        status = _status(error, request_id, message, metadata, violations, len(error.violations))
    if _encoded_size(status) > budget:  # huge metadata: keep the reason, shorten the texts
        metadata = {key: value[:64] for key, value in list(metadata.items())[:16]}
        status = _status(error, request_id, message[:128], metadata, [], len(error.violations))
    return status


def _status(
    error: WfeError,
    request_id: str,
    message: str,
    metadata: dict[str, str],
    violations: list[error_details_pb2.BadRequest.FieldViolation],
    total: int,
) -> status_pb2.Status:
    if total > len(violations):
        metadata = {**metadata, OMITTED: str(total - len(violations))}
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata)
    details: list[Any] = [info, error_details_pb2.RequestInfo(request_id=request_id)]
    if violations:
        details.append(error_details_pb2.BadRequest(field_violations=violations))
    packed = []
    for detail in details:
        envelope = any_pb2.Any()
        envelope.Pack(detail)
        packed.append(envelope)
    return status_pb2.Status(code=error.code.value[0], message=message, details=packed)


def _encoded_size(status: status_pb2.Status) -> int:
    """Trailer bytes: the status base64-encoded, and its message percent-encoded again."""
    size: int = status.ByteSize()
    return 4 * -(-size // 3) + 3 * len(status.message.encode()) + 64


def scrub(text: str, limit: int) -> str:
    """`text` without traces, file paths or Python reprs, and at most `limit` characters."""
    cleaned = REPR.sub("", PATH.sub("<path>", TRACEBACK.sub("", text)))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
