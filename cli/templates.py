"""`wfe template ...`: the catalog of ready-made workflows, and drafts made from it."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from cli import output
from cli.client import DEFAULT_ADDRESS, EXIT_CODES, Address, Json, Target, Tenant, Token, call
from cli.workflows import SERVICE, PageSize, PageToken, RequestId, show_workflow
from wfe.v1 import tenant_pb2, workflow_pb2

template_app = typer.Typer(
    help="Browse the template catalog and start workflows from it.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _catalog(response: workflow_pb2.ListTemplatesResponse) -> None:
    rows = [
        (
            t.id,
            t.name,
            t.category,
            output.label(tenant_pb2.Tier, t.minimum_tier),
            "yes" if t.available else "no",
        )
        for t in response.templates
    ]
    headers = ["id", "name", "category", "tier", "available"]
    output.table(headers, rows, empty="no templates")
    output.next_page(response.next_page_token)


@template_app.command("list")
def list_(
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    available_only: Annotated[
        bool, typer.Option("--available-only", help="only those the plan may use")
    ] = False,
    page_size: PageSize = 0,
    page_token: PageToken = "",
    json_: Json = False,
) -> None:
    """List the templates, saying which the tenant's plan may use."""
    request = workflow_pb2.ListTemplatesRequest(
        available_only=available_only, page_size=page_size, page_token=page_token
    )
    response = call(Target(address, tenant, token), f"{SERVICE}/ListTemplates", request)
    output.show(response, json_, _catalog)


@template_app.command("use")
def use(
    template_id: Annotated[str, typer.Argument(metavar="TEMPLATE_ID", help="the template's id")],
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    name: Annotated[
        str, typer.Option(help="the new workflow's name; default: the template's")
    ] = "",
    request_id: RequestId = "",
    json_: Json = False,
) -> None:
    """Create a draft workflow from a template."""
    request = workflow_pb2.CreateWorkflowFromTemplateRequest(
        template_id=template_id, name=name, request_id=request_id or str(uuid.uuid4())
    )
    created = call(Target(address, tenant, token), f"{SERVICE}/CreateWorkflowFromTemplate", request)
    output.show(created.workflow, json_, show_workflow)
