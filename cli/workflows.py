"""`wfe workflow ...`: send JSON/YAML workflow documents to a running server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from foundation.errors import WfeError
from service.workflows.documents import load_document
from wfe.v1 import workflow_pb2, workflow_pb2_grpc

workflow_app = typer.Typer(
    help="Create and validate workflows from JSON/YAML documents.", no_args_is_help=True
)

Address = Annotated[str, typer.Option(envvar="WFE_ADDRESS", help="host:port of the server")]
Tenant = Annotated[str, typer.Option(envvar="WFE_TENANT", help="tenant, sent as x-tenant-id")]
Token = Annotated[str, typer.Option(envvar="WFE_TOKEN", help="bearer token granting the tenant")]
File = Annotated[Path, typer.Option("--file", "-f", exists=True, dir_okay=False, help="document")]


def _document(path: Path) -> workflow_pb2.Workflow:
    try:
        return load_document(path.read_text(encoding="utf-8"))
    except WfeError as error:
        typer.echo(f"{path}: {error.message}", err=True)
        raise typer.Exit(2) from None


def _call(address: str, tenant: str, token: str, method: str, request: Any) -> Any:
    metadata = (("authorization", f"Bearer {token}"), ("x-tenant-id", tenant))
    with grpc.insecure_channel(address) as channel:
        stub = workflow_pb2_grpc.WorkflowServiceStub(channel)
        try:
            return getattr(stub, method)(request, metadata=metadata, timeout=30)
        except grpc.RpcError as error:
            _report(error)
            raise typer.Exit(1) from None


def _report(error: grpc.RpcError) -> None:
    typer.echo(f"{error.code().name}: {error.details()}", err=True)
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                typer.echo(f"  {violation.field}: {violation.description}", err=True)


def _print(message: Any) -> None:
    typer.echo(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2))


@workflow_app.command("create")
def create(
    file: File,
    tenant: Tenant,
    token: Token,
    address: Address = "127.0.0.1:50051",
    request_id: Annotated[str, typer.Option(help="idempotency key; default: a new UUID")] = "",
) -> None:
    """Create a draft workflow from a document; prints the workflow as JSON."""
    request = workflow_pb2.CreateWorkflowRequest(
        workflow=_document(file), request_id=request_id or str(uuid.uuid4())
    )
    _print(_call(address, tenant, token, "CreateWorkflow", request).workflow)


@workflow_app.command("validate")
def validate(
    file: File, tenant: Tenant, token: Token, address: Address = "127.0.0.1:50051"
) -> None:
    """Validate a document against the rules and the tenant's plan; exits 1 when invalid."""
    request = workflow_pb2.ValidateWorkflowRequest(workflow=_document(file))
    response = _call(address, tenant, token, "ValidateWorkflow", request)
    _print(response)
    if not response.valid:
        raise typer.Exit(1)
