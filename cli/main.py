"""The `wfe` command: every group and command, and none of what they run until one runs.

Declaring a command imports typer, the cli helpers and the generated messages only; the
service, engine, workers, SQLAlchemy and Celery load inside the commands that use them,
and grpc on the first call. So `wfe --help` and the client commands start quickly.
"""

from __future__ import annotations

import typer

from cli import run, tokens
from cli.client import EXIT_CODES
from cli.executions import execution_app
from cli.templates import template_app
from cli.tenants import tenant_app
from cli.workflows import workflow_app

app = typer.Typer(
    help=(
        "wfe: a multi-tenant workflow engine served over gRPC. Client commands (workflow, "
        "template, execution, tenant info) read WFE_ADDRESS, WFE_TENANT and WFE_TOKEN, "
        "which `wfe dev` and `wfe env` print."
    ),
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
)
for command in (
    run.serve,
    run.dev,
    run.gateway,
    run.migrate,
    run.worker,
    run.worker_ping,
    run.beat,
    tokens.token,
    tokens.env,
):
    app.command()(command)
app.add_typer(workflow_app, name="workflow")
app.add_typer(template_app, name="template")
app.add_typer(execution_app, name="execution")
app.add_typer(tenant_app, name="tenant")

if __name__ == "__main__":
    app()
