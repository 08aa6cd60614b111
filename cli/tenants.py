"""`wfe tenant ...`: register tenants and change their plans; read your own over gRPC."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli import output
from cli.client import DEFAULT_ADDRESS, EXIT_CODES, Address, Json, Target, Tenant, Token, call
from wfe.v1 import tenant_pb2

tenant_app = typer.Typer(
    help=(
        "Administer tenants on the database (create, list, set-tier: as the owner, "
        "WFE_ADMIN_DATABASE_URL) and read your own from a running server (info)."
    ),
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
)

Overrides = Annotated[list[str] | None, typer.Option("--override", help="enterprise LIMIT=N")]


@tenant_app.command("create")
def create(
    tenant_id: Annotated[
        str, typer.Argument(metavar="TENANT_ID", help="lowercase id, as sent in x-tenant-id")
    ],
    name: Annotated[str, typer.Option(help="display name")] = "",
    tier: Annotated[str, typer.Option(help="free, professional or enterprise")] = "free",
    override: Overrides = None,
) -> None:
    """Register a tenant."""
    from cli import admin

    admin.create(tenant_id, name, tier, override or [])
    typer.echo(f"created tenant {tenant_id} ({tier})")


@tenant_app.command("list")
def list_() -> None:
    """List tenants as JSON lines."""
    from cli import admin

    for row in admin.rows():
        typer.echo(json.dumps(row))


@tenant_app.command("set-tier")
def set_tier(tenant_id: str, tier: str, override: Overrides = None) -> None:
    """Move a tenant to another tier (overrides: Enterprise only)."""
    from cli import admin

    admin.set_tier(tenant_id, tier, override or [])
    typer.echo(f"tenant {tenant_id} is now {tier}")


@tenant_app.command("set-adapters")
def set_adapters(
    tenant_id: str,
    adapters: Annotated[
        list[str] | None, typer.Argument(metavar="ADAPTER...", help="installed adapters")
    ] = None,
) -> None:
    """Enable exactly these custom adapters for an Enterprise tenant (none: disable all)."""
    from cli import admin

    admin.set_adapters(tenant_id, adapters or [])
    typer.echo(f"tenant {tenant_id} adapters: {', '.join(adapters or []) or 'none'}")


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def _show(tenant: tenant_pb2.Tenant) -> None:
    limits, usage = tenant.limits, tenant.usage

    def optional(name: str) -> str:
        return _limit(getattr(limits, name) if limits.HasField(name) else None)

    output.fields(
        [
            ("id", tenant.id),
            ("name", tenant.name),
            ("tier", output.label(tenant_pb2.Tier, tenant.tier)),
            ("created", output.when(tenant.create_time)),
        ]
    )
    typer.echo()
    rows = [
        ("workflows", str(usage.workflows), optional("max_workflows")),
        ("steps per workflow", "", optional("max_steps_per_workflow")),
        (
            "running executions",
            str(usage.concurrent_executions),
            optional("max_concurrent_executions"),
        ),
        ("executions today", str(usage.executions_today), optional("max_executions_per_day")),
        ("execution time (s)", "", optional("max_execution_seconds")),
        ("templates", "", optional("max_templates")),
        ("history (days)", "", str(limits.history_retention_days)),
        ("definition bytes", "", str(limits.max_definition_bytes)),
        ("input bytes", "", str(limits.max_input_bytes)),
        ("step output bytes", "", str(limits.max_output_bytes)),
    ]
    output.table(["limit", "used", "allowed"], rows, empty="")
    typer.echo()
    output.fields(
        [
            ("step types", output.label(tenant_pb2.StepTypeAccess, limits.step_types)),
            ("versioning", output.label(tenant_pb2.VersioningLevel, limits.versioning)),
            ("template access", output.label(tenant_pb2.TemplateAccess, limits.templates)),
            ("logs", output.label(tenant_pb2.LogDetail, limits.log_detail)),
            ("monitoring", output.label(tenant_pb2.MonitoringLevel, limits.monitoring)),
            ("webhooks", "yes" if limits.webhooks else "no"),
            ("daily count resets", output.when(usage.executions_reset_time)),
        ]
    )


@tenant_app.command("info")
def info(
    tenant: Tenant, token: Token, address: Address = DEFAULT_ADDRESS, json_: Json = False
) -> None:
    """Show your tenant: its tier, the limits in force and what it uses of them."""
    request = tenant_pb2.GetTenantRequest()
    found = call(Target(address, tenant, token), "wfe.v1.TenantService/GetTenant", request)
    output.show(found.tenant, json_, _show)
