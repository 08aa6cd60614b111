"""The one table from gRPC status to HTTP status, and the error body each refusal becomes."""

from __future__ import annotations

import grpc
import pytest
from grpc import aio

from foundation import errors
from gateway.errors import STATUS_TO_HTTP, error_body, rpc_error_body
from service.interceptors.errors import to_status

# grpc-gateway's table (runtime/errors.go), which the README shows.
STANDARD = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
}

# Every error the server raises, as a frontend receives it: HTTP status and code.
AS_SENT: dict[type[errors.WfeError], tuple[int, str]] = {
    errors.WfeError: (500, "internal"),
    errors.Unauthenticated: (401, "unauthenticated"),
    errors.PermissionDenied: (403, "permission_denied"),
    errors.InvalidInput: (400, "invalid_input"),
    errors.AlreadyExists: (409, "invalid_input"),
    errors.InvalidWorkflowDefinition: (400, "invalid_workflow_definition"),
    errors.StepConfigurationError: (400, "step_configuration_error"),
    errors.WorkflowNotFound: (404, "workflow_not_found"),
    errors.ExecutionNotFound: (404, "execution_not_found"),
    errors.WorkflowExecutionError: (409, "workflow_execution_error"),
    errors.ExecutionStateConflict: (400, "workflow_execution_error"),
    errors.ExecutionTimeout: (504, "timeout"),
    errors.WorkTimeout: (504, "timeout"),
    errors.Unavailable: (503, "unavailable"),
    errors.TierRestriction: (403, "tier_restriction"),
    errors.QuotaExhausted: (429, "tier_restriction"),
    errors.FeatureNotInPlan: (403, "tier_restriction"),
}


def refused(error: errors.WfeError, request_id: str = "req-1") -> aio.AioRpcError:
    """The AioRpcError a client gets when the server refuses with `error`."""
    status = to_status(error, request_id)
    trailing = aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return aio.AioRpcError(error.code, aio.Metadata(), trailing, details=status.message)


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda code: code.name)
def test_every_grpc_code_has_the_standard_http_status(code: grpc.StatusCode) -> None:
    assert STATUS_TO_HTTP[code] == STANDARD[code.name]


def test_the_table_covers_every_error_the_server_raises() -> None:
    assert set(AS_SENT) == set(errors.STATUS_CODES)


@pytest.mark.parametrize("kind", list(AS_SENT), ids=lambda kind: kind.__name__)
def test_each_server_error_becomes_its_status_and_lower_case_reason(
    kind: type[errors.WfeError],
) -> None:
    status, body = rpc_error_body(refused(kind("refused", metadata={"tier": "free"})), "gw-1")
    assert (status, body["error"]["code"]) == AS_SENT[kind]
    assert body == error_body(AS_SENT[kind][1], "refused", {"tier": "free"}, "req-1")


def test_field_violations_and_metadata_go_into_details() -> None:
    error = errors.InvalidWorkflowDefinition(
        "2 problems",
        metadata={"steps": 3},
        violations=[
            errors.FieldViolation("steps[1].next", "no step 'nowhere'"),
            errors.FieldViolation("name", "1 to 200 characters"),
        ],
    )
    status, body = rpc_error_body(refused(error), "gw-1")
    assert status == 400
    assert body["error"]["details"] == {
        "steps": "3",
        "field_violations": [
            {"field": "steps[1].next", "description": "no step 'nowhere'"},
            {"field": "name", "description": "1 to 200 characters"},
        ],
    }


def test_the_servers_request_id_wins_over_the_one_sent() -> None:
    _, body = rpc_error_body(refused(errors.WorkflowNotFound("no"), "server-id"), "gateway-id")
    assert body["error"]["request_id"] == "server-id"


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "timeout"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "resource_exhausted"),
        (grpc.StatusCode.UNKNOWN, 500, "internal"),
        (grpc.StatusCode.CANCELLED, 499, "cancelled"),
    ],
)
def test_a_status_without_error_info_gets_a_code_and_no_internals(
    code: grpc.StatusCode, status: int, expected: str
) -> None:
    leaky = "failed to connect to all addresses; last error: ipv4:10.1.2.3:50051"
    error = aio.AioRpcError(code, aio.Metadata(), aio.Metadata(), details=leaky)
    answered, body = rpc_error_body(error, "gw-1")
    assert (answered, body["error"]["code"]) == (status, expected)
    assert "10.1.2.3" not in body["error"]["message"]
    assert body["error"]["details"] == {} and body["error"]["request_id"] == "gw-1"


def test_undecodable_status_details_are_treated_as_absent() -> None:
    trailing = aio.Metadata(("grpc-status-details-bin", b"\xff\xff not a status"))
    error = aio.AioRpcError(grpc.StatusCode.NOT_FOUND, aio.Metadata(), trailing, details="x")
    assert rpc_error_body(error, "gw-1") == (
        404,
        error_body("not_found", "not found", {}, "gw-1"),
    )
