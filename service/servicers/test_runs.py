"""TestExecute's messages: the inline definition it may run, and each step's trace."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from foundation.errors import InvalidWorkflowDefinition
from service import offload
from service.servicers import values
from service.servicers.messages import error_message, timestamp, value_message
from service.workflows import documents
from service.workflows.service import refusal
from service.workflows.validation import too_many_steps
from wfe.v1 import execution_pb2, workflow_pb2

STATUSES = {
    "pending": execution_pb2.STEP_STATUS_PENDING,
    "in_progress": execution_pb2.STEP_STATUS_IN_PROGRESS,
    "completed": execution_pb2.STEP_STATUS_COMPLETED,
    "failed": execution_pb2.STEP_STATUS_FAILED,
    "cancelled": execution_pb2.STEP_STATUS_CANCELLED,
}


async def inline_definition(workflow: workflow_pb2.Workflow) -> dict[str, Any]:
    """The request's inline definition as a dict, refused early when it has more steps than
    any plan allows (validation against the tenant's plan follows)."""
    early = too_many_steps(len(workflow.steps), None)
    if early is not None:
        raise refusal(early.errors)
    await values.finite(workflow, "workflow", InvalidWorkflowDefinition)
    return dict(await offload.run(documents.definition_of, workflow))


def step_trace(entry: dict[str, Any]) -> execution_pb2.StepTrace:
    message = execution_pb2.StepTrace(
        step_id=entry["step_id"],
        instance=entry["instance"],
        name=entry["name"],
        type=entry["type"],
        status=STATUSES[entry["status"]],
        attempts=entry["attempts"],
        duration_ms=_duration(entry["started_at"], entry["finished_at"]),
        from_fixture=entry["from_fixture"],
    )
    _set_time(message, "start_time", entry["started_at"])
    _set_time(message, "complete_time", entry["finished_at"])
    if entry["input"] is not None:
        message.input.CopyFrom(value_message(entry["input"]))
    if entry["output"] is not None:
        message.output.CopyFrom(value_message(entry["output"]))
    if entry["error"]:
        message.error.CopyFrom(error_message(entry["error"]))
    for seen in entry["conditions"]:
        condition = message.conditions.add(condition=seen["condition"], holds=seen["holds"])
        condition.values.update(seen.get("values") or {})
    for line in entry["logs"]:
        message.logs.add().update(line if isinstance(line, dict) else {"message": str(line)})
    for earlier in entry["retries"]:
        retry = message.retries.add(
            attempt=earlier["attempt"],
            duration_ms=_duration(earlier["started_at"], earlier["finished_at"]),
        )
        _set_time(retry, "start_time", earlier["started_at"])
        if earlier["error"]:
            retry.error.CopyFrom(error_message(earlier["error"]))
    return message


def _duration(start: datetime | None, end: datetime | None) -> int:
    if start is None or end is None:
        return 0
    return max(int((end - start).total_seconds() * 1000), 0)


def _set_time(message: Any, field: str, moment: datetime | None) -> None:
    if moment is not None:
        getattr(message, field).CopyFrom(timestamp(moment))
