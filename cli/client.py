"""Calls to a running server: where it is, who is calling, and what a failure means.

grpc and the error-detail messages load inside `call` and `report`, not at import:
every command module imports this one, and `wfe --help` should not pay for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

if TYPE_CHECKING:
    import grpc

# The server's default WFE_LISTEN_ADDRESS, as a client reaches it (a test keeps them equal).
DEFAULT_ADDRESS: Final = "127.0.0.1:50051"
TIMEOUT_SECONDS: Final = 30.0

REFUSED: Final = 1
USAGE: Final = 2  # typer's own code for a bad option; also an unreadable document
FAILED: Final = 3
# Codes that say nothing about the request: the server broke, or was never reached.
SERVER_FAILURES: Final = frozenset(
    {"UNAVAILABLE", "INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED", "DATA_LOSS", "UNIMPLEMENTED"}
)
EXIT_CODES: Final = (
    "Exit codes: 0 done; 1 refused by the server (invalid input, not found, wrong state, "
    "not allowed, plan limit) or a definition found invalid; 2 usage error (bad option, "
    "missing --tenant/--token, unreadable file); 3 server failed or unreachable "
    "(UNAVAILABLE, INTERNAL, UNKNOWN, DEADLINE_EXCEEDED)."
)
DETAILS_KEY: Final = "grpc-status-details-bin"
OMITTED_KEY: Final = "violations_omitted"

Address = Annotated[
    str, typer.Option("--address", envvar="WFE_ADDRESS", help="host:port of the server")
]
Tenant = Annotated[
    str, typer.Option("--tenant", envvar="WFE_TENANT", help="tenant, sent as x-tenant-id")
]
Token = Annotated[
    str, typer.Option("--token", envvar="WFE_TOKEN", help="bearer token granting the tenant")
]
Json = Annotated[bool, typer.Option("--json", help="print the response message as JSON")]


@dataclass(frozen=True, slots=True)
class Target:
    """The server to call and the identity to call it with."""

    address: str
    tenant: str
    token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"), ("x-tenant-id", self.tenant))


def call(target: Target, method: str, request: Any) -> Any:
    """Call `method` ("wfe.v1.WorkflowService/GetWorkflow", as grpcurl names it).

    Returns the response message; on failure prints why and exits with the code the
    failure's kind has (see `EXIT_CODES`).
    """
    import grpc
    from google.protobuf import descriptor_pool, message_factory

    service, _, name = method.partition("/")
    descriptor = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    if request.DESCRIPTOR is not descriptor.input_type:
        raise TypeError(f"{method} takes {descriptor.input_type.full_name}")
    response_class = message_factory.GetMessageClass(descriptor.output_type)
    with grpc.insecure_channel(target.address) as channel:
        rpc = channel.unary_unary(
            f"/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_class.FromString,
        )
        try:
            return rpc(request, metadata=target.metadata, timeout=TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            raise typer.Exit(report(error, target)) from None


def exit_code(code: str) -> int:
    """The exit code for a call that ended with gRPC status `code` (its name)."""
    return FAILED if code in SERVER_FAILURES else REFUSED


def report(error: grpc.RpcError, target: Target) -> int:
    """Print the failure on stderr: code, reason, message, field violations, request id."""
    code: str = error.code().name
    message: str = error.details() or ""
    status = _rich_status(error)
    if status is None:
        typer.echo(f"{code}: {_plain(code, message, target)}", err=True)
        return exit_code(code)
    from google.rpc import error_details_pb2

    reason, request_id, violations, omitted = "", "", [], ""
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, omitted = info.reason, info.metadata.get(OMITTED_KEY, "")
        elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            request = error_details_pb2.RequestInfo()
            detail.Unpack(request)
            request_id = request.request_id
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
    head = code if reason in ("", code) else f"{code} {reason}"
    typer.echo(f"{head}: {status.message or message}", err=True)
    for field, description in violations:
        typer.echo(f"  {field}: {description}", err=True)
    if omitted:
        typer.echo(f"  ... and {omitted} more violations", err=True)
    if request_id:
        typer.echo(f"  request id: {request_id}", err=True)
    return exit_code(code)


def _rich_status(error: grpc.RpcError) -> Any:
    """The `google.rpc.Status` the server sent in the trailers, if it sent one."""
    for key, value in error.trailing_metadata() or ():
        if key == DETAILS_KEY:
            from google.rpc import status_pb2

            return status_pb2.Status.FromString(value)
    return None


def _plain(code: str, message: str, target: Target) -> str:
    """A failure without a wfe status: most often, no server where the client looked."""
    if code == "UNAVAILABLE":
        return (
            f"no wfe server answers at {target.address} ({message}); start one with "
            "`make dev`, or point --address / WFE_ADDRESS at it"
        )
    if code == "DEADLINE_EXCEEDED":
        return f"{target.address} did not answer within {TIMEOUT_SECONDS:g} s"
    return message
