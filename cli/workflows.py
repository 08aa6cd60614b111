"""`wfe workflow ...`: a workflow's life cycle, from a JSON/YAML document to its versions."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import output
from cli.client import (
    DEFAULT_ADDRESS,
    EXIT_CODES,
    REFUSED,
    USAGE,
    Address,
    Json,
    Target,
    Tenant,
    Token,
    call,
)
from wfe.v1 import workflow_pb2

SERVICE = "wfe.v1.WorkflowService"

workflow_app = typer.Typer(
    help="Define, version and draw workflows on a running server.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
)

File = Annotated[
    Path,
    typer.Option("--file", "-f", exists=True, dir_okay=False, help="JSON or YAML document"),
]
WorkflowId = Annotated[str, typer.Argument(metavar="WORKFLOW_ID", help="the workflow's id")]
RequestId = Annotated[str, typer.Option(help="idempotency key; default: a new UUID")]
PageSize = Annotated[int, typer.Option(help="at most this many (server default 50)")]
PageToken = Annotated[str, typer.Option(help="from the previous page")]


def read_document(path: Path) -> workflow_pb2.Workflow:
    """The workflow a document describes; exits 2 when the file is not one."""
    # The server's own reader, so the CLI accepts exactly what the service stores.
    from foundation.errors import WfeError
    from service.workflows.documents import load_document

    try:
        return load_document(path.read_text(encoding="utf-8"))
    except WfeError as error:
        typer.echo(f"{path}: {error.message}", err=True)
        raise typer.Exit(USAGE) from None


def show_workflow(workflow: workflow_pb2.Workflow) -> None:
    output.fields(
        [
            ("id", workflow.id),
            ("name", workflow.name),
            ("status", output.label(workflow_pb2.WorkflowStatus, workflow.status)),
            ("version", str(workflow.version)),
            ("published", str(workflow.published_version or "")),
            ("description", workflow.description),
            ("created", f"{output.when(workflow.create_time)} by {workflow.created_by}"),
            ("updated", f"{output.when(workflow.update_time)} by {workflow.updated_by}"),
        ]
    )
    _steps(workflow.steps)


def _show_version(version: workflow_pb2.WorkflowVersion) -> None:
    published = f"{output.when(version.publish_time)} by {version.published_by}"
    output.fields(
        [
            ("workflow", version.workflow_id),
            ("version", str(version.version)),
            ("name", version.name),
            ("description", version.description),
            ("created", f"{output.when(version.create_time)} by {version.created_by}"),
            ("published", published if version.HasField("publish_time") else ""),
            ("notes", version.release_notes),
        ]
    )
    _steps(version.steps)


def _steps(steps: Any) -> None:
    typer.echo()
    rows = [(step.id, step.type, step.name, _next(step)) for step in steps]
    output.table(["step", "type", "name", "next"], rows, empty="no steps")


def _next(step: workflow_pb2.Step) -> str:
    """Where a step goes: its `next`, or a condition's branches and default."""
    if step.next:
        return str(step.next)
    config = step.config
    branches = [b["next"] for b in config["conditions"]] if "conditions" in config else []
    default = [config["default"]] if "default" in config else []
    return " | ".join(str(target) for target in [*branches, *default])


def _list(response: workflow_pb2.ListWorkflowsResponse) -> None:
    rows = [
        (
            w.id,
            w.name,
            output.label(workflow_pb2.WorkflowStatus, w.status),
            str(w.version),
            output.when(w.update_time),
        )
        for w in response.workflows
    ]
    output.table(["id", "name", "status", "version", "updated"], rows, empty="no workflows")
    output.next_page(response.next_page_token)


def _validation(response: workflow_pb2.ValidateWorkflowResponse) -> None:
    issues = [("error", i) for i in response.errors] + [("warning", i) for i in response.warnings]
    rows = [(level, i.code, i.step_id, i.field, i.message) for level, i in issues]
    if rows:
        output.table(["level", "code", "step", "field", "message"], rows, empty="")
    verdict = "valid" if response.valid else "invalid"
    typer.echo(f"{verdict}: {len(response.errors)} errors, {len(response.warnings)} warnings")


def _versions(response: workflow_pb2.ListWorkflowVersionsResponse) -> None:
    rows = [
        (
            str(v.version),
            output.when(v.create_time),
            v.created_by,
            output.when(v.publish_time),
            v.release_notes,
        )
        for v in response.versions
    ]
    headers = ["version", "created", "by", "published", "notes"]
    output.table(headers, rows, empty="no stored versions")
    output.next_page(response.next_page_token)


def _diff(changes: workflow_pb2.DiffWorkflowVersionsResponse) -> None:
    for step in changes.added_steps:
        typer.echo(f"+ step {step.id} ({step.type})")
    for step in changes.removed_steps:
        typer.echo(f"- step {step.id} ({step.type})")
    for changed in changes.changed_steps:
        typer.echo(f"~ step {changed.step_id}")
        for change in changed.fields:
            typer.echo(f"    {_change(change)}")
    for change in changes.changed_fields:
        typer.echo(f"~ {_change(change)}")
    if not any((changes.added_steps, changes.removed_steps, changes.changed_steps)):
        if not changes.changed_fields:
            typer.echo("no differences", err=True)


def _change(change: workflow_pb2.FieldChange) -> str:
    before = output.compact(change.before) if change.HasField("before") else "(absent)"
    after = output.compact(change.after) if change.HasField("after") else "(absent)"
    return f"{change.field}: {before} -> {after}"


@workflow_app.command("list")
def list_(
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    status: Annotated[str, typer.Option(help="draft, active or archived")] = "",
    name_prefix: Annotated[str, typer.Option(help="names starting with this")] = "",
    page_size: PageSize = 0,
    page_token: PageToken = "",
    json_: Json = False,
) -> None:
    """List workflows, newest first."""
    request = workflow_pb2.ListWorkflowsRequest(
        status=output.choice(workflow_pb2.WorkflowStatus, status, "--status") if status else 0,
        name_prefix=name_prefix,
        page_size=page_size,
        page_token=page_token,
    )
    response = call(Target(address, tenant, token), f"{SERVICE}/ListWorkflows", request)
    output.show(response, json_, _list)


@workflow_app.command("get")
def get(
    workflow_id: WorkflowId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    version: Annotated[int, typer.Option(help="a stored version (Professional and up)")] = 0,
    json_: Json = False,
) -> None:
    """Show a workflow, or one of its stored versions, with its steps."""
    target = Target(address, tenant, token)
    if version:
        request = workflow_pb2.GetWorkflowVersionRequest(workflow_id=workflow_id, version=version)
        stored = call(target, f"{SERVICE}/GetWorkflowVersion", request).version
        output.show(stored, json_, _show_version)
    else:
        request = workflow_pb2.GetWorkflowRequest(id=workflow_id)
        output.show(call(target, f"{SERVICE}/GetWorkflow", request).workflow, json_, show_workflow)


@workflow_app.command("validate")
def validate(
    file: File,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    json_: Json = False,
) -> None:
    """Check a document against the rules and the tenant's plan; exits 1 when invalid."""
    request = workflow_pb2.ValidateWorkflowRequest(workflow=read_document(file))
    response = call(Target(address, tenant, token), f"{SERVICE}/ValidateWorkflow", request)
    output.show(response, json_, _validation)
    if not response.valid:
        raise typer.Exit(REFUSED)


@workflow_app.command("create")
def create(
    file: File,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    request_id: RequestId = "",
    json_: Json = False,
) -> None:
    """Create a draft workflow from a document."""
    request = workflow_pb2.CreateWorkflowRequest(
        workflow=read_document(file), request_id=request_id or str(uuid.uuid4())
    )
    created = call(Target(address, tenant, token), f"{SERVICE}/CreateWorkflow", request)
    output.show(created.workflow, json_, show_workflow)


@workflow_app.command("update")
def update(
    workflow_id: WorkflowId,
    file: File,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    json_: Json = False,
) -> None:
    """Replace a workflow's definition (name, description, input schema, steps)."""
    workflow = read_document(file)
    workflow.id = workflow_id
    request = workflow_pb2.UpdateWorkflowRequest(workflow=workflow)
    updated = call(Target(address, tenant, token), f"{SERVICE}/UpdateWorkflow", request)
    output.show(updated.workflow, json_, show_workflow)


@workflow_app.command("activate")
def activate(
    workflow_id: WorkflowId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    json_: Json = False,
) -> None:
    """Make a workflow active: only active workflows can be executed."""
    request = workflow_pb2.ActivateWorkflowRequest(id=workflow_id)
    active = call(Target(address, tenant, token), f"{SERVICE}/ActivateWorkflow", request)
    output.show(active.workflow, json_, show_workflow)


@workflow_app.command("archive")
def archive(
    workflow_id: WorkflowId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    json_: Json = False,
) -> None:
    """Archive a workflow: it stays readable but can no longer be executed."""
    request = workflow_pb2.ArchiveWorkflowRequest(id=workflow_id)
    archived = call(Target(address, tenant, token), f"{SERVICE}/ArchiveWorkflow", request)
    output.show(archived.workflow, json_, show_workflow)


@workflow_app.command("delete")
def delete(
    workflow_id: WorkflowId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    json_: Json = False,
) -> None:
    """Delete a workflow (admin role); executions keep the version they ran."""
    request = workflow_pb2.DeleteWorkflowRequest(id=workflow_id)
    response = call(Target(address, tenant, token), f"{SERVICE}/DeleteWorkflow", request)
    output.show(response, json_, lambda _: typer.echo(f"deleted workflow {workflow_id}"))


@workflow_app.command("versions")
def versions(
    workflow_id: WorkflowId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    page_size: PageSize = 0,
    page_token: PageToken = "",
    json_: Json = False,
) -> None:
    """List a workflow's stored versions, newest first (Professional and up)."""
    request = workflow_pb2.ListWorkflowVersionsRequest(
        workflow_id=workflow_id, page_size=page_size, page_token=page_token
    )
    response = call(Target(address, tenant, token), f"{SERVICE}/ListWorkflowVersions", request)
    output.show(response, json_, _versions)


@workflow_app.command("diff")
def diff(
    workflow_id: WorkflowId,
    from_version: Annotated[int, typer.Argument(metavar="FROM", help="the older version")],
    to_version: Annotated[int, typer.Argument(metavar="TO", help="the newer version")],
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    json_: Json = False,
) -> None:
    """Step-level differences between two versions (Enterprise)."""
    request = workflow_pb2.DiffWorkflowVersionsRequest(
        workflow_id=workflow_id, from_version=from_version, to_version=to_version
    )
    changes = call(Target(address, tenant, token), f"{SERVICE}/DiffWorkflowVersions", request)
    output.show(changes, json_, _diff)


@workflow_app.command("diagram")
def diagram(
    workflow_id: WorkflowId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    version: Annotated[int, typer.Option(help="a stored version; default: current")] = 0,
    json_: Json = False,
) -> None:
    """Print a Mermaid flowchart of the workflow."""
    request = workflow_pb2.GetWorkflowDiagramRequest(workflow_id=workflow_id, version=version)
    response = call(Target(address, tenant, token), f"{SERVICE}/GetWorkflowDiagram", request)
    output.show(response, json_, lambda answer: typer.echo(answer.mermaid))
