"""`wfe execution watch`: an execution's progress, live, from `WatchExecution`.

The stream starts with the execution's snapshot and then carries its events until it
finishes. A dropped connection (a server restarting, a network blip) is not the end:
the watch calls again, and the new snapshot says where the execution is now, so nothing
shown is lost or shown out of order. It gives up only when no server answers for
`RECONNECT_PATIENCE_SECONDS`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Final

import typer
from google.protobuf import json_format

from cli import output
from cli.client import FAILED, REFUSED, Target, report
from wfe.v1 import execution_pb2

METHOD: Final = "/wfe.v1.ExecutionService/WatchExecution"
BAR_WIDTH: Final = 24
RECONNECT_PATIENCE_SECONDS: Final = 60.0
RETRY_DELAYS: Final = (0.2, 0.5, 1.0, 2.0)
TERMINAL: Final = {
    execution_pb2.EXECUTION_STATUS_COMPLETED: "completed",
    execution_pb2.EXECUTION_STATUS_FAILED: "failed",
    execution_pb2.EXECUTION_STATUS_CANCELLED: "cancelled",
}


class Dropped(Exception):
    """The stream ended without the execution's end: call again."""


def watch(target: Target, execution_id: str, as_json: bool) -> int:
    """Follow the execution to its end; the exit code: 0 completed, 1 failed or cancelled."""
    request = execution_pb2.WatchExecutionRequest(execution_id=execution_id)
    give_up_at = time.monotonic() + RECONNECT_PATIENCE_SECONDS
    attempt = 0
    while True:
        try:
            final = _follow(_stream(target, request), as_json)
        except Dropped as dropped:
            if time.monotonic() > give_up_at:
                typer.echo(f"gave up: {dropped}", err=True)
                return FAILED
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            if not as_json:
                typer.echo(f"connection lost ({dropped}); reconnecting", err=True)
            time.sleep(delay)
            attempt += 1
            continue
        return 0 if final == "completed" else REFUSED


def _stream(target: Target, request: Any) -> Iterator[execution_pb2.WatchExecutionResponse]:
    import grpc

    with grpc.insecure_channel(target.address) as channel:
        rpc = channel.unary_stream(
            METHOD,
            request_serializer=type(request).SerializeToString,
            response_deserializer=execution_pb2.WatchExecutionResponse.FromString,
        )
        try:
            yield from rpc(request, metadata=target.metadata)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                raise Dropped(error.code().name) from None
            raise typer.Exit(report(error, target)) from None


def _follow(stream: Iterator[execution_pb2.WatchExecutionResponse], as_json: bool) -> str:
    """Show each message; the execution's final status once the stream ends."""
    final = ""
    for message in stream:
        if as_json:
            text = json_format.MessageToJson(message, preserving_proto_field_name=True)
            typer.echo(json.dumps(json.loads(text), separators=(",", ":")))
        if message.HasField("snapshot"):
            final = TERMINAL.get(message.snapshot.status, "")
            if not as_json:
                _show_snapshot(message.snapshot)
        elif message.event.HasField("workflow_execution_completed"):
            final = message.event.workflow_execution_completed.status
            if not as_json:
                _show_end(message.event)
        elif not as_json:
            _show_event(message.event)
    if not final:
        raise Dropped("the stream ended before the execution did")
    return final


def bar(progress: float) -> str:
    """`[#########---------------]  38%`."""
    filled = round(max(0.0, min(progress, 1.0)) * BAR_WIDTH)
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {progress:4.0%}"


def _show_snapshot(execution: execution_pb2.Execution) -> None:
    status = output.label(execution_pb2.ExecutionStatus, execution.status)
    step = f" at {execution.current_step}" if execution.current_step else ""
    typer.echo(f"{execution.id} {bar(execution.progress)} {status}{step}")
    if execution.status in TERMINAL and execution.HasField("result"):
        typer.echo(f"result: {output.compact(execution.result)}")


def _show_event(event: Any) -> None:
    kind = event.WhichOneof("payload")
    if kind == "workflow_execution_update":
        update = event.workflow_execution_update
        name = update.details.step_name or update.current_step
        typer.echo(f"{bar(update.progress)} {update.status} {name}".rstrip())
    elif kind == "workflow_step_completed":
        done = event.workflow_step_completed
        typer.echo(f"  step {done.step_id} completed in {done.duration_ms} ms")
    elif kind == "workflow_step_failed":
        failed = event.workflow_step_failed
        typer.echo(f"  step {failed.step_id} failed after {failed.attempts} attempt(s)")
    elif kind == "workflow_execution_log":
        line = event.workflow_execution_log
        typer.echo(f"  {line.level}: {line.step_id}: {line.message}")


def _show_end(event: Any) -> None:
    end = event.workflow_execution_completed
    progress = 1.0 if end.status == "completed" else 0.0
    shown = bar(progress) if end.status == "completed" else end.status
    typer.echo(f"{shown} {end.status} in {end.duration_ms} ms")
    if end.HasField("output"):
        typer.echo(f"result: {output.compact(end.output)}")
