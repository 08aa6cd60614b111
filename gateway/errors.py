"""Errors as a frontend sees them: seed 004's body, from a gRPC status or from the gateway.

Every failure answers ``{"error": {"code", "message", "details", "request_id"}}``. A refusal
of the server keeps its `ErrorInfo`: the reason lower-cased is the code (`workflow_not_found`,
`tier_restriction`), its metadata goes into `details`, and `BadRequest` field violations into
`details["field_violations"]` as ``[{"field", "description"}]``. A status without an
`ErrorInfo` (the server cannot be reached, say) gets a code of its own and a generic message:
what the channel says may name internal addresses. The gateway's own refusals (a malformed
body, an unknown route) are `GatewayError`s and answer the same body.

`STATUS_TO_HTTP` is the one table from gRPC code to HTTP status, grpc-gateway's; a
TIER_RESTRICTION refused as FAILED_PRECONDITION (a feature outside the plan) is 403 instead of
400, as the seed's "Función no disponible en este tier" is a refusal, not a bad request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from foundation.errors import DOMAIN, Reason

STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
VIOLATIONS: Final = "field_violations"

STATUS_TO_HTTP: Final[Mapping[grpc.StatusCode, int]] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

REASON_TO_HTTP: Final[Mapping[tuple[grpc.StatusCode, str], int]] = {
    (grpc.StatusCode.FAILED_PRECONDITION, Reason.TIER_RESTRICTION): 403,
}
"""Where a reason moves a status off the table: a feature outside the plan is forbidden."""

FALLBACK_CODES: Final[Mapping[grpc.StatusCode, str]] = {
    grpc.StatusCode.UNKNOWN: "internal",
    grpc.StatusCode.DATA_LOSS: "internal",
    grpc.StatusCode.INVALID_ARGUMENT: "invalid_input",
    grpc.StatusCode.OUT_OF_RANGE: "invalid_input",
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.UNIMPLEMENTED: "not_implemented",
}
"""Codes of statuses without an ErrorInfo; any other is the status name in lower case."""

FALLBACK_MESSAGES: Final[Mapping[grpc.StatusCode, str]] = {
    grpc.StatusCode.UNAVAILABLE: "the workflow service is unavailable; try again",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the workflow service did not answer in time",
    grpc.StatusCode.UNKNOWN: "internal error; quote the request id to support",
    grpc.StatusCode.INTERNAL: "internal error; quote the request id to support",
    grpc.StatusCode.DATA_LOSS: "internal error; quote the request id to support",
}


class GatewayError(Exception):
    """A request the gateway refuses itself, before or instead of any call.

    Args:
        status: The HTTP status.
        code: The body's lower-case code, e.g. `invalid_input`.
        message: Human-readable, safe to show.
        details: Machine-readable context, e.g. ``{"field_violations": [...]}``.
        headers: Extra response headers (`Allow` on a 405).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details, request_id)


def invalid_input(message: str, field: str, description: str) -> GatewayError:
    """A 400 `invalid_input` with one field violation, as the server words its own."""
    violations = [{"field": field, "description": description}]
    return GatewayError(400, "invalid_input", message, {VIOLATIONS: violations})


def error_body(
    code: str, message: str, details: Mapping[str, Any] | None, request_id: str
) -> dict[str, Any]:
    """Seed 004's error body."""
    return {
        "error": {
            "code": code,
            "message": message,
            "details": dict(details or {}),
            "request_id": request_id,
        }
    }


def rpc_error_body(error: grpc.aio.AioRpcError, request_id: str) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body for a failed call.

    `request_id` is the id the gateway sent; the server's own (its `RequestInfo`, the one in
    its logs) wins when the status carries one.
    """
    code = error.code()
    status = _rich_status(error.trailing_metadata())
    info = _unpacked(status, error_details_pb2.ErrorInfo) if status else None
    if info is None or info.domain != DOMAIN:
        body_code = FALLBACK_CODES.get(code, code.name.lower())
        message = FALLBACK_MESSAGES.get(code, code.value[1])
        return STATUS_TO_HTTP.get(code, 500), error_body(body_code, message, {}, request_id)
    details: dict[str, Any] = dict(info.metadata)
    bad_request = _unpacked(status, error_details_pb2.BadRequest) if status else None
    if bad_request is not None and bad_request.field_violations:
        details[VIOLATIONS] = [
            {"field": v.field, "description": v.description} for v in bad_request.field_violations
        ]
    request_info = _unpacked(status, error_details_pb2.RequestInfo) if status else None
    if request_info is not None and request_info.request_id:
        request_id = request_info.request_id
    http = REASON_TO_HTTP.get((code, info.reason), STATUS_TO_HTTP.get(code, 500))
    return http, error_body(info.reason.lower(), error.details() or "", details, request_id)


def _rich_status(metadata: Any) -> status_pb2.Status | None:
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                return None
    return None


def _unpacked(status: status_pb2.Status, kind: Any) -> Any:
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            found = kind()
            detail.Unpack(found)
            return found
    return None
