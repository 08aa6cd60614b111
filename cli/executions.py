"""`wfe execution ...`: start executions, follow them, and cancel, retry or rerun them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated

import typer
from google.protobuf import struct_pb2

from cli import output
from cli.client import DEFAULT_ADDRESS, EXIT_CODES, Address, Json, Target, Tenant, Token, call
from cli.workflows import PageSize, PageToken, RequestId
from wfe.v1 import execution_pb2

SERVICE = "wfe.v1.ExecutionService"

execution_app = typer.Typer(
    help="Start executions and follow, cancel, retry or rerun them.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    rich_markup_mode=None,
)

ExecutionId = Annotated[str, typer.Argument(metavar="EXECUTION_ID", help="the execution's id")]
View = Annotated[str, typer.Option(help="basic or full (default: the method's)")]


def json_object(text: str, option: str) -> struct_pb2.Struct:
    """A JSON object given inline or as @path; a usage error for anything else."""
    try:
        source = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
        value = json.loads(source)
    except OSError as error:
        raise typer.BadParameter(
            f"cannot read {text[1:]}: {error.strerror}", param_hint=option
        ) from None
    except json.JSONDecodeError as error:
        raise typer.BadParameter(f"not JSON: {error}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter("expected a JSON object", param_hint=option)
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def _view(text: str) -> int:
    return output.choice(execution_pb2.ExecutionView, text, "--view") if text else 0


def show_execution(execution: execution_pb2.Execution) -> None:
    error = execution.error
    rerun = f"{execution.rerun_of} from step {execution.rerun_from_step}"
    output.fields(
        [
            ("id", execution.id),
            ("workflow", f"{execution.workflow_id} (version {execution.workflow_version})"),
            ("status", output.label(execution_pb2.ExecutionStatus, execution.status)),
            ("progress", _progress(execution)),
            ("current", execution.current_step),
            ("created", f"{output.when(execution.create_time)} by {execution.created_by}"),
            ("started", output.when(execution.start_time)),
            ("completed", output.when(execution.complete_time)),
            ("deadline", output.when(execution.deadline)),
            ("rerun of", rerun if execution.rerun_of else ""),
            ("cancelled by", execution.cancelled_by),
            ("error", f"{error.code}: {error.message}" if error.code else execution.error_detail),
            ("omitted", ", ".join(execution.omitted_fields)),
            ("input", output.compact(execution.input) if execution.HasField("input") else ""),
            ("result", output.compact(execution.result) if execution.HasField("result") else ""),
        ]
    )
    typer.echo()
    rows = [
        (
            step.step_id,
            output.label(execution_pb2.StepStatus, step.status),
            str(step.attempts),
            f"{step.duration_ms} ms" if step.duration_ms else "",
            f"{step.error.code}: {step.error.message}" if step.error.code else "",
        )
        for step in execution.steps
    ]
    output.table(["step", "status", "attempts", "took", "error"], rows, empty="no steps")


def _progress(execution: execution_pb2.Execution) -> str:
    done = round(execution.progress * execution.total_steps)
    return f"{done}/{execution.total_steps} steps ({execution.progress:.0%})"


def _list(response: execution_pb2.ListExecutionsResponse) -> None:
    rows = [
        (
            e.id,
            e.workflow_id,
            str(e.workflow_version),
            output.label(execution_pb2.ExecutionStatus, e.status),
            f"{e.progress:.0%}",
            output.when(e.create_time),
        )
        for e in response.executions
    ]
    headers = ["id", "workflow", "version", "status", "progress", "created"]
    output.table(headers, rows, empty="no executions")
    output.next_page(response.next_page_token)


@execution_app.command("start")
def start(
    workflow_id: Annotated[
        str, typer.Argument(metavar="WORKFLOW_ID", help="an active workflow's id")
    ],
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    input_: Annotated[
        str, typer.Option("--input", help="JSON object, or @file holding one")
    ] = "{}",
    request_id: RequestId = "",
    json_: Json = False,
) -> None:
    """Start an execution of a workflow's current version; answers at once."""
    request = execution_pb2.StartExecutionRequest(
        workflow_id=workflow_id,
        input=json_object(input_, "--input"),
        request_id=request_id or str(uuid.uuid4()),
    )
    started = call(Target(address, tenant, token), f"{SERVICE}/StartExecution", request)
    output.show(started.execution, json_, show_execution)


@execution_app.command("get")
def get(
    execution_id: ExecutionId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    view: View = "",
    json_: Json = False,
) -> None:
    """Show an execution and where each of its steps is."""
    request = execution_pb2.GetExecutionRequest(execution_id=execution_id, view=_view(view))
    found = call(Target(address, tenant, token), f"{SERVICE}/GetExecution", request)
    output.show(found.execution, json_, show_execution)


@execution_app.command("watch")
def watch(
    execution_id: ExecutionId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    json_: Annotated[
        bool, typer.Option("--json", help="print each message as one line of JSON")
    ] = False,
) -> None:
    """Follow an execution live, with a progress bar, until it ends; reconnects after a drop.

    Exits 0 when it completed, 1 when it failed or was cancelled (or the server refused).
    """
    from cli import watching

    raise typer.Exit(watching.watch(Target(address, tenant, token), execution_id, json_))


@execution_app.command("list")
def list_(
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    workflow: Annotated[str, typer.Option(help="only this workflow's")] = "",
    status: Annotated[
        list[str] | None,
        typer.Option(
            help="queued, pending, in_progress, completed, failed, cancelled (repeatable)"
        ),
    ] = None,
    created_by: Annotated[str, typer.Option(help="only those this subject started")] = "",
    view: View = "",
    page_size: PageSize = 0,
    page_token: PageToken = "",
    json_: Json = False,
) -> None:
    """List executions, newest first."""
    request = execution_pb2.ListExecutionsRequest(
        workflow_id=workflow,
        statuses=[
            output.choice(execution_pb2.ExecutionStatus, s, "--status") for s in status or []
        ],
        created_by=created_by,
        view=_view(view),
        page_size=page_size,
        page_token=page_token,
    )
    response = call(Target(address, tenant, token), f"{SERVICE}/ListExecutions", request)
    output.show(response, json_, _list)


@execution_app.command("cancel")
def cancel(
    execution_id: ExecutionId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    reason: Annotated[str, typer.Option(help="recorded with the cancellation")] = "",
    json_: Json = False,
) -> None:
    """Cancel a queued, pending or running execution."""
    request = execution_pb2.CancelExecutionRequest(execution_id=execution_id, reason=reason)
    cancelled = call(Target(address, tenant, token), f"{SERVICE}/CancelExecution", request)
    output.show(cancelled.execution, json_, show_execution)


@execution_app.command("retry")
def retry(
    execution_id: ExecutionId,
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    json_: Json = False,
) -> None:
    """Resume a failed execution from its failed step, keeping what completed."""
    request = execution_pb2.RetryExecutionRequest(execution_id=execution_id)
    resumed = call(Target(address, tenant, token), f"{SERVICE}/RetryExecution", request)
    output.show(resumed.execution, json_, show_execution)


@execution_app.command("rerun")
def rerun(
    execution_id: ExecutionId,
    from_step: Annotated[str, typer.Option(help="the step to start from")],
    tenant: Tenant,
    token: Token,
    address: Address = DEFAULT_ADDRESS,
    input_patch: Annotated[
        str, typer.Option(help="JSON object (or @file) replacing top-level input fields")
    ] = "",
    request_id: RequestId = "",
    json_: Json = False,
) -> None:
    """Start a new execution of a finished one's version from one of its steps."""
    request = execution_pb2.RerunExecutionRequest(
        execution_id=execution_id,
        from_step=from_step,
        request_id=request_id or str(uuid.uuid4()),
    )
    if input_patch:
        request.input_patch.CopyFrom(json_object(input_patch, "--input-patch"))
    rerun_ = call(Target(address, tenant, token), f"{SERVICE}/RerunExecution", request)
    output.show(rerun_.execution, json_, show_execution)
